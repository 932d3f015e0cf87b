//! Normalisation with dataset statistics (saved in the model card): states, controls and t_go
//! are standardised per dimension; the standard deviations are floored so constant dimensions
//! (a fixed target, the mass of a target) stay finite.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::Dataset;

/// Per-dimension mean and standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalizer {
    /// State mean, length n (over every state of every training trajectory).
    pub x_mean: Vec<f64>,
    /// State std, length n.
    pub x_std: Vec<f64>,
    /// Control mean, length m (over every optimal control).
    pub u_mean: Vec<f64>,
    /// Control std, length m.
    pub u_std: Vec<f64>,
    /// t_go mean [s].
    pub t_mean: f64,
    /// t_go std [s].
    pub t_std: f64,
    /// The rows above as tensors, made once per device and dtype ([`crate::tensor::ConstCache`]).
    #[serde(skip)]
    cache: crate::tensor::ConstCache,
}

fn mean_std(data: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = (data.len() / dim).max(1) as f64;
    let mut mean = vec![0.0; dim];
    for (i, v) in data.iter().enumerate() {
        mean[i % dim] += v / rows;
    }
    let mut var = vec![0.0; dim];
    for (i, v) in data.iter().enumerate() {
        var[i % dim] += (v - mean[i % dim]).powi(2) / rows;
    }
    let scale: f64 = mean.iter().map(|m| m.abs()).fold(0.0, f64::max).max(1.0);
    let std = var.iter().map(|v| v.sqrt().max(1e-3 * scale)).collect();
    (mean, std)
}

impl Normalizer {
    /// Statistics of a training dataset.
    pub fn fit(ds: &Dataset) -> Self {
        let (x_mean, x_std) = mean_std(&ds.x, ds.n);
        let (u_mean, u_std) = mean_std(&ds.u, ds.m);
        let (t, ts) = mean_std(&ds.t_go, 1);
        Self { x_mean, x_std, u_mean, u_std, t_mean: t[0], t_std: ts[0].max(1e-3 * t[0].abs().max(1.0)), cache: Default::default() }
    }

    /// `(x - mean) / std` on `[.., n]`.
    pub fn x(&self, x: &Tensor) -> Tensor {
        (x - self.cache.row(&self.x_mean, x)) / self.cache.row(&self.x_std, x)
    }

    /// A state difference scaled by the state std (no shift), `[.., n]`.
    pub fn dx(&self, dx: &Tensor) -> Tensor {
        dx / self.cache.row(&self.x_std, dx)
    }

    /// `(u - mean) / std` on `[.., m]`.
    pub fn u(&self, u: &Tensor) -> Tensor {
        (u - self.cache.row(&self.u_mean, u)) / self.cache.row(&self.u_std, u)
    }

    /// Inverse of [`Normalizer::u`].
    pub fn u_inv(&self, un: &Tensor) -> Tensor {
        un * self.cache.row(&self.u_std, un) + self.cache.row(&self.u_mean, un)
    }

    /// A control difference in normalised units -> physical units (no shift).
    pub fn du_inv(&self, dun: &Tensor) -> Tensor {
        dun * self.cache.row(&self.u_std, dun)
    }

    /// `(t_go - mean) / std` on `[B]`.
    pub fn t(&self, t: &Tensor) -> Tensor {
        (t - self.t_mean) / self.t_std
    }
}
