//! Double integrator, the linear sanity check (docs/problems.md): `p' = v`, `v' = u`, `|u| <= u_max`.
//!
//! With a zero-order hold the exact discretisation is `x_{k+1} = A x_k + B u_k`,
//! `A = [[1, dt], [0, 1]]`, `B = [dt^2/2, dt]`; RK4 reproduces it exactly (the solution is a
//! quadratic in t), so the constrained optimum is a QP and, where bounds are inactive,
//! finite-horizon LQR. Cost: the quadratic tracking cost of [`super::QuadraticCost`].

use nalgebra::{DMatrix, DVector, Matrix2, Vector2};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::ProblemKind;
use super::{check_box, check_finite_states, ConstraintViolation, ControlConstraint, Problem, QuadraticCost};
use crate::error::{non_negative, positive, ConfigError};

/// Double-integrator parameters (project defaults: a 5 s horizon at 10 Hz, unit weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoubleIntegratorParams {
    /// Control (acceleration) bound u_max [m/s^2]. Default 1.
    pub u_max: f64,
    /// Step dt [s]. Default 0.1.
    pub dt: f64,
    /// Horizon N [steps]. Default 50.
    pub horizon: usize,
    /// Diagonal of the stage weight Q on (position, velocity). Default (1, 1).
    pub q: [f64; 2],
    /// Control weight R. Default 0.1.
    pub r: f64,
    /// Diagonal of the terminal weight Q_f. Default (10, 10).
    pub q_f: [f64; 2],
    /// Success radius `|x_N - x_target| <` this. Default 0.1.
    pub success_radius: f64,
}

impl Default for DoubleIntegratorParams {
    fn default() -> Self {
        Self { u_max: 1.0, dt: 0.1, horizon: 50, q: [1.0, 1.0], r: 0.1, q_f: [10.0, 10.0], success_radius: 0.1 }
    }
}

impl DoubleIntegratorParams {
    /// Checks ranges; `prefix` is the dotted path used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{prefix}.{name}");
        positive(&f("u_max"), self.u_max)?;
        positive(&f("dt"), self.dt)?;
        if self.horizon < 1 {
            return Err(ConfigError::invalid(f("horizon"), "must be >= 1"));
        }
        for i in 0..2 {
            non_negative(&f(&format!("q[{i}]")), self.q[i])?;
            non_negative(&f(&format!("q_f[{i}]")), self.q_f[i])?;
        }
        positive(&f("r"), self.r)?;
        positive(&f("success_radius"), self.success_radius)
    }
}

/// The double-integrator problem (n = 2, m = 1).
#[derive(Debug, Clone)]
pub struct DoubleIntegrator {
    params: DoubleIntegratorParams,
    cost: QuadraticCost,
}

impl DoubleIntegrator {
    /// Builds the problem from validated parameters.
    ///
    /// # Errors
    /// As [`DoubleIntegratorParams::validate`].
    pub fn new(params: DoubleIntegratorParams) -> Result<Self, ConfigError> {
        params.validate("double_integrator")?;
        let cost = QuadraticCost { q: params.q.to_vec(), r: params.r, q_f: params.q_f.to_vec() };
        Ok(Self { params, cost })
    }

    /// The parameters.
    pub fn params(&self) -> &DoubleIntegratorParams {
        &self.params
    }

    /// Exact zero-order-hold discretisation `(A, B)` for step `dt` [s].
    pub fn discrete(&self, dt: f64) -> (Matrix2<f64>, Vector2<f64>) {
        (Matrix2::new(1.0, dt, 0.0, 1.0), Vector2::new(0.5 * dt * dt, dt))
    }
}

impl Problem for DoubleIntegrator {
    fn kind(&self) -> ProblemKind {
        ProblemKind::DoubleIntegrator
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
        ControlConstraint::Box { lower: DVector::from_element(1, -self.params.u_max), upper: DVector::from_element(1, self.params.u_max) }
    }
    fn default_target(&self) -> DVector<f64> {
        DVector::zeros(2)
    }
    fn f(&self, x: &DVector<f64>, u: &DVector<f64>) -> DVector<f64> {
        DVector::from_vec(vec![x[1], u[0]])
    }
    fn f_batch(&self, x: &Tensor, u: &Tensor) -> Tensor {
        Tensor::stack(&[x.select(1, 1), u.select(1, 0)], 1)
    }
    fn f_jacobian(&self, _x: &DVector<f64>, _u: &DVector<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
        (DMatrix::from_row_slice(2, 2, &[0.0, 1.0, 0.0, 0.0]), DMatrix::from_row_slice(2, 1, &[0.0, 1.0]))
    }
    fn cost(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>, _dt: f64) -> f64 {
        self.cost.eval(x, u, x_target)
    }
    fn cost_batch(&self, x: &Tensor, u: &Tensor, x_target: &Tensor, _dt: &Tensor) -> Tensor {
        self.cost.eval_batch(x, u, x_target)
    }
    fn check_constraints(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, _x_target: &DVector<f64>) -> Vec<ConstraintViolation> {
        let mut v = check_box(u, -self.params.u_max, self.params.u_max, 1e-9);
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
