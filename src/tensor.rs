//! Conversions between nalgebra (f64, single trajectory) and tch (batched) forms.

use nalgebra::{DMatrix, DVector};
use tch::{Device, Kind, Tensor};

/// A `DMatrix` `[r, c]` as an f64 tensor `[r, c]` on `device`.
pub fn from_dmatrix(m: &DMatrix<f64>, device: Device) -> Tensor {
    let rows: Vec<f64> = m.transpose().as_slice().to_vec(); // row-major
    Tensor::from_slice(&rows).view([m.nrows() as i64, m.ncols() as i64]).to_device(device)
}

/// A `DVector` `[n]` as an f64 tensor `[n]` on `device`.
pub fn from_dvector(v: &DVector<f64>, device: Device) -> Tensor {
    Tensor::from_slice(v.as_slice()).to_device(device)
}

/// Any tensor (dtype, device, gradient) flattened to its f64 values in row-major order: how a
/// batch `[B, ...]` goes to the per-sample f64 code (sample `i` is the `i`-th run of
/// `numel / B` values). `None` if it cannot be read.
pub fn flat_f64(t: &Tensor) -> Option<Vec<f64>> {
    Vec::<f64>::try_from(t.detach().to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view([-1])).ok()
}

/// A 2-D tensor `[r, c]` (any dtype/device) as an f64 `DMatrix` `[r, c]`.
///
/// # Errors
/// [`tch::TchError`] if the tensor is not 2-D or cannot be read.
pub fn to_dmatrix(t: &Tensor) -> Result<DMatrix<f64>, tch::TchError> {
    let size = t.size();
    if size.len() != 2 {
        return Err(tch::TchError::Shape(format!("to_dmatrix expects a 2-D tensor, got {size:?}")));
    }
    let data: Vec<f64> = Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view([-1]))?;
    Ok(DMatrix::from_row_slice(size[0] as usize, size[1] as usize, &data))
}

/// A 1-D tensor `[n]` as an f64 `DVector`.
///
/// # Errors
/// [`tch::TchError`] if the tensor cannot be read.
pub fn to_dvector(t: &Tensor) -> Result<DVector<f64>, tch::TchError> {
    let data: Vec<f64> = Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view([-1]))?;
    Ok(DVector::from_vec(data))
}
