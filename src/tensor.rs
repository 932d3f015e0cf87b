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

/// A constant vector `values` `[len]` in `like`'s dtype on `like`'s device, made without a copy
/// from host memory where `like` is on an accelerator: one fill kernel per value, then a
/// concatenation (a single fill where all values are equal). A small copy from pageable host
/// memory costs a host synchronisation on CUDA and cannot be captured in a CUDA graph
/// ([`crate::model::cuda_graph`]); a fill can. On the CPU: the plain copy.
pub fn const_vec(values: &[f64], like: &Tensor) -> Tensor {
    let (dev, kind) = (like.device(), like.kind());
    if dev == Device::Cpu {
        return Tensor::from_slice(values).to_kind(kind);
    }
    if values.is_empty() {
        return Tensor::zeros([0], (kind, dev));
    }
    if values.iter().all(|v| v.to_bits() == values[0].to_bits()) {
        return Tensor::full([values.len() as i64], values[0], (kind, dev));
    }
    Tensor::cat(&values.iter().map(|v| Tensor::full([1], *v, (kind, dev))).collect::<Vec<_>>(), 0)
}

/// Device copies of constant host vectors, made once per (values, device, dtype) and shared
/// afterwards (shallow clones: callers must not modify them in place; changed values get a new
/// entry). Entries are never dropped: a CUDA graph captured with one reads its storage
/// at every replay, and holds no reference of its own. For the constants used
/// many times per refinement on an accelerator (the normaliser's rows): without it each use is a
/// host-to-device copy, a synchronisation on CUDA and not capturable in a CUDA graph. The CPU
/// caches too (the same values, two ops fewer per use). Cloning gives an empty
/// cache; two caches always compare equal (they hold nothing but derived copies).
#[derive(Default)]
pub struct ConstCache(std::sync::Mutex<Vec<CachedConst>>);

/// One entry of a [`ConstCache`]: the host values, device, dtype, the tensor.
type CachedConst = (Vec<f64>, Device, Kind, Tensor);

impl ConstCache {
    /// `values` as a `[len]` tensor on `like`'s device and dtype (the bits of `values` are the
    /// key: equal constants share one tensor).
    pub fn row(&self, values: &[f64], like: &Tensor) -> Tensor {
        let (dev, kind) = (like.device(), like.kind());
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = |v: &[f64]| v.len() == values.len() && v.iter().zip(values).all(|(a, b)| a.to_bits() == b.to_bits());
        if let Some((.., t)) = held.iter().find(|(v, d, k, _)| *d == dev && *k == kind && same(v)) {
            return t.shallow_clone();
        }
        let t = const_vec(values, like);
        held.push((values.to_vec(), dev, kind, t.shallow_clone()));
        t
    }
}

impl Clone for ConstCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for ConstCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ConstCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConstCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_constant_is_made_once_and_remade_when_its_values_change() {
        let cache = ConstCache::default();
        let like = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let a = cache.row(&[1.0, 2.0], &like);
        let b = cache.row(&[1.0, 2.0], &like);
        assert_eq!(a.data_ptr(), b.data_ptr(), "the same storage, not a new copy");
        assert_eq!(a.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 2.0]);
        let c = cache.row(&[1.0, 3.0], &like);
        assert_eq!(Vec::<f32>::try_from(&c).unwrap(), vec![1.0, 3.0], "changed values are not served stale");
        let d = cache.row(&[1.0, 2.0], &like.to_kind(Kind::Double));
        assert_eq!(d.kind(), Kind::Double, "one copy per dtype");
    }
}
