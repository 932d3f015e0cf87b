//! Van der Pol oscillator with a bounded additive control (docs/problems.md; the TRC paper's
//! setting, Jain & Linares 2025):
//!
//! `x1' = x2`, `x2' = mu (1 - x1^2) x2 - x1 + u`, `|u| <= u_max`, RK4 with `dt`, horizon `N`,
//! `J = sum_{k<N} x_k' Q x_k + R u_k^2 + x_N' Q_f x_N` (deviations from the target).

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::ProblemKind;
use super::{check_box, check_finite_states, ConstraintViolation, ControlConstraint, Problem, QuadraticCost};
use crate::error::{non_negative, positive, ConfigError};

/// Van der Pol parameters. Defaults: docs/problems.md (the TRC authors' setting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VanDerPolParams {
    /// Nonlinearity / damping parameter mu [-]. Default 1.
    pub mu: f64,
    /// Upper control bound u_max [-]. Default 2.
    pub u_max: f64,
    /// Lower control bound u_min [-]; default `-u_max` (the symmetric `|u| <= u_max` of the paper).
    pub u_min: Option<f64>,
    /// Step dt [s]. Default 0.05.
    pub dt: f64,
    /// Horizon N [steps]. Default 100 (5 s).
    pub horizon: usize,
    /// Diagonal of the stage state weight Q, length 2. Default (10, 5).
    pub q: [f64; 2],
    /// Control weight R. Default 0.1.
    pub r: f64,
    /// Terminal weight as a multiple of Q: Q_f = q_f_scale * Q. Default 20.
    pub q_f_scale: f64,
    /// Success radius: `|x_N - x_target| < success_radius`. Default 0.2 (docs/problems.md).
    pub success_radius: f64,
}

impl Default for VanDerPolParams {
    fn default() -> Self {
        Self { mu: 1.0, u_max: 2.0, u_min: None, dt: 0.05, horizon: 100, q: [10.0, 5.0], r: 0.1, q_f_scale: 20.0, success_radius: 0.2 }
    }
}

impl VanDerPolParams {
    /// Checks ranges; `prefix` is the dotted path used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{prefix}.{name}");
        non_negative(&f("mu"), self.mu)?;
        positive(&f("u_max"), self.u_max)?;
        if let Some(lo) = self.u_min {
            if !(lo.is_finite() && lo < self.u_max) {
                return Err(ConfigError::invalid(f("u_min"), format!("must be finite and < u_max = {}, got {lo}", self.u_max)));
            }
        }
        positive(&f("dt"), self.dt)?;
        if self.horizon < 1 {
            return Err(ConfigError::invalid(f("horizon"), "must be >= 1"));
        }
        for (i, q) in self.q.iter().enumerate() {
            non_negative(&f(&format!("q[{i}]")), *q)?;
        }
        non_negative(&f("r"), self.r)?;
        non_negative(&f("q_f_scale"), self.q_f_scale)?;
        positive(&f("success_radius"), self.success_radius)
    }
}

/// The Van der Pol problem (n = 2, m = 1).
#[derive(Debug, Clone)]
pub struct VanDerPol {
    params: VanDerPolParams,
    cost: QuadraticCost,
}

impl VanDerPol {
    /// Builds the problem from validated parameters.
    ///
    /// # Errors
    /// As [`VanDerPolParams::validate`].
    pub fn new(params: VanDerPolParams) -> Result<Self, ConfigError> {
        params.validate("vanderpol")?;
        let cost = QuadraticCost { q: params.q.to_vec(), r: params.r, q_f: params.q.iter().map(|q| q * params.q_f_scale).collect() };
        Ok(Self { params, cost })
    }

    /// The parameters.
    pub fn params(&self) -> &VanDerPolParams {
        &self.params
    }

    /// Control bounds `(u_min, u_max)`.
    pub fn bounds(&self) -> (f64, f64) {
        (self.params.u_min.unwrap_or(-self.params.u_max), self.params.u_max)
    }
}

impl Problem for VanDerPol {
    fn kind(&self) -> ProblemKind {
        ProblemKind::Vanderpol
    }
    fn state_dim(&self) -> usize {
        2
    }
    fn control_dim(&self) -> usize {
        1
    }
    fn horizon(&self) -> usize {
        self.params.horizon
    }
    fn default_t_go(&self) -> f64 {
        self.params.dt * self.params.horizon as f64
    }
    fn control_constraint(&self) -> ControlConstraint {
        let (lo, hi) = self.bounds();
        ControlConstraint::Box { lower: DVector::from_element(1, lo), upper: DVector::from_element(1, hi) }
    }
    fn default_target(&self) -> DVector<f64> {
        DVector::zeros(2)
    }
    fn f(&self, x: &DVector<f64>, u: &DVector<f64>) -> DVector<f64> {
        let (x1, x2) = (x[0], x[1]);
        DVector::from_vec(vec![x2, self.params.mu * (1.0 - x1 * x1) * x2 - x1 + u[0]])
    }
    fn f_batch(&self, x: &Tensor, u: &Tensor) -> Tensor {
        let x1 = x.select(1, 0);
        let x2 = x.select(1, 1);
        let x2dot = (1.0 - &x1 * &x1) * &x2 * self.params.mu - &x1 + u.select(1, 0);
        Tensor::stack(&[x2, x2dot], 1)
    }
    fn f_jacobian(&self, x: &DVector<f64>, _u: &DVector<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
        let (x1, x2, mu) = (x[0], x[1], self.params.mu);
        let fx = DMatrix::from_row_slice(2, 2, &[0.0, 1.0, -2.0 * mu * x1 * x2 - 1.0, mu * (1.0 - x1 * x1)]);
        (fx, DMatrix::from_row_slice(2, 1, &[0.0, 1.0]))
    }
    fn cost(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>, _dt: f64) -> f64 {
        self.cost.eval(x, u, x_target)
    }
    fn cost_batch(&self, x: &Tensor, u: &Tensor, x_target: &Tensor, _dt: &Tensor) -> Tensor {
        self.cost.eval_batch(x, u, x_target)
    }
    fn check_constraints(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, _x_target: &DVector<f64>) -> Vec<ConstraintViolation> {
        let (lo, hi) = self.bounds();
        let mut v = check_box(u, lo, hi, 1e-9);
        v.extend(check_finite_states(x));
        v
    }
    fn is_success(&self, x_final: &DVector<f64>, x_target: &DVector<f64>) -> bool {
        (x_final - x_target).norm() < self.params.success_radius
    }
    fn quadratic_cost(&self) -> Option<(Vec<f64>, f64, Vec<f64>)> {
        Some((self.cost.q.clone(), self.cost.r, self.cost.q_f.clone()))
    }
}
