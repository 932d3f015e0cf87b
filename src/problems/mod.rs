//! Optimal-control problems: the [`Problem`] trait and its three implementations.
//!
//! Every problem is a continuous-time system `x' = f(x, u)` integrated with classical RK4 under a
//! zero-order hold on `u` (the control is constant over each step of length `dt`), over a horizon of
//! `N` steps. Each problem has two forms that must agree (tests hold them to 1e-9 in f64):
//! - single trajectory in f64 with nalgebra ([`Problem::rollout`]), for solvers and the plant;
//! - batched with tch ([`Problem::rollout_batch`]), `[B, N, m] -> [B, N+1, n]`, on any device and
//!   dtype, for the TRC model (simulation inside the refinement loop).
//!
//! Conventions: a trajectory is a `DMatrix` `[N+1, n]` (row k is `x_k`), a control sequence a
//! `DMatrix` `[N, m]` (row k is `u_k`, held over `[t_k, t_k + dt)`); all quantities in SI units.

mod config;
mod double_integrator;
mod powered_descent;
mod sim;
mod van_der_pol;

pub use config::{ProblemConfig, ProblemKind};
pub use sim::{cost_gauss_newton_refine, cost_lm_step_error_held, position_sensitivities, terminal_sensitivity, Simulator, FAST_BATCH};

pub use double_integrator::{DoubleIntegrator, DoubleIntegratorParams};
pub use powered_descent::{fuel_batch, DescentParams, LcvxDiscretization, PoweredDescent};
pub use van_der_pol::{VanDerPol, VanDerPolParams};

use nalgebra::{DMatrix, DVector};
use tch::Tensor;

use crate::error::ProblemError;

/// The set of admissible controls at one node.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlConstraint {
    /// Componentwise bounds `lower <= u <= upper`, each of length m.
    Box {
        /// Lower bounds, length m.
        lower: DVector<f64>,
        /// Upper bounds, length m.
        upper: DVector<f64>,
    },
    /// Thrust annulus intersected with a pointing cone (Acikmese & Ploen 2007, eqs. 5 and 9):
    /// `rho_min <= |T| <= rho_max` and the angle between `T` and +z at most `max_tilt` [rad].
    ThrustAnnulusCone {
        /// Lower thrust bound rho1 [N].
        rho_min: f64,
        /// Upper thrust bound rho2 [N].
        rho_max: f64,
        /// Largest angle between thrust and the local vertical [rad].
        max_tilt: f64,
    },
}

/// Which constraint a [`ConstraintViolation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A control component below its lower bound.
    ControlLower,
    /// A control component above its upper bound.
    ControlUpper,
    /// Thrust magnitude below rho1.
    ThrustMin,
    /// Thrust magnitude above rho2.
    ThrustMax,
    /// Thrust tilted further from vertical than allowed.
    Pointing,
    /// Position outside the glide-slope cone above the landing site.
    GlideSlope,
    /// Speed above v_max.
    SpeedLimit,
    /// Mass below the dry mass (out of propellant).
    DryMass,
    /// A state or control entry is NaN or infinite.
    NonFinite,
}

/// One constraint violation found by [`Problem::check_constraints`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintViolation {
    /// Node index k (state node for state constraints, control node for control constraints).
    pub node: usize,
    /// Which constraint.
    pub kind: ViolationKind,
    /// By how much, in the constraint's units (N, rad, m, m/s, kg; 0 for NonFinite).
    pub amount: f64,
}

/// An optimal-control problem: dimensions, bounds, dynamics, cost, constraint checks, target.
///
/// Implementations provide the continuous dynamics in both forms ([`Problem::f`],
/// [`Problem::f_batch`]); integration, rollouts and batched forms have default RK4 implementations.
pub trait Problem: Send + Sync + std::fmt::Debug {
    /// Which problem this is.
    fn kind(&self) -> ProblemKind;
    /// State dimension n.
    fn state_dim(&self) -> usize;
    /// Control dimension m.
    fn control_dim(&self) -> usize;
    /// Horizon N (number of control intervals; N+1 state nodes).
    fn horizon(&self) -> usize;
    /// Default time-to-go t_go [s] when the goal leaves it to the controller (N * dt for the
    /// fixed-step problems; descent: a nominal flight time, the solver then searches t_f).
    fn default_t_go(&self) -> f64;
    /// Step dt [s] for a time-to-go: `t_go / N`.
    fn dt_for(&self, t_go: f64) -> f64 {
        t_go / self.horizon() as f64
    }
    /// Admissible control set at every node.
    fn control_constraint(&self) -> ControlConstraint;
    /// Default target state x_target, length n.
    fn default_target(&self) -> DVector<f64>;

    /// Continuous dynamics `x' = f(x, u)`; `x` length n, `u` length m, returns length n.
    fn f(&self, x: &DVector<f64>, u: &DVector<f64>) -> DVector<f64>;
    /// Batched continuous dynamics: `x` `[B, n]`, `u` `[B, m]` -> `[B, n]`, same device and dtype.
    fn f_batch(&self, x: &Tensor, u: &Tensor) -> Tensor;
    /// Jacobians of the continuous dynamics `(df/dx [n, n], df/du [n, m])` at `(x, u)`.
    fn f_jacobian(&self, x: &DVector<f64>, u: &DVector<f64>) -> (DMatrix<f64>, DMatrix<f64>);

    /// Total cost J of a trajectory `x` `[N+1, n]` under controls `u` `[N, m]` with step `dt`.
    fn cost(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>, dt: f64) -> f64;
    /// Batched cost: `x` `[B, N+1, n]`, `u` `[B, N, m]`, `x_target` `[B, n]`, `dt` `[B]` -> `[B]`.
    fn cost_batch(&self, x: &Tensor, u: &Tensor, x_target: &Tensor, dt: &Tensor) -> Tensor;

    /// All violations of the path and control constraints along a trajectory (empty = feasible).
    /// `x` `[N+1, n]`, `u` `[N, m]`. The terminal condition is judged by [`Problem::is_success`].
    fn check_constraints(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>) -> Vec<ConstraintViolation>;
    /// The problem's success criterion on the final state (docs/problems.md).
    fn is_success(&self, x_final: &DVector<f64>, x_target: &DVector<f64>) -> bool;
    /// The terminal *equality* of the problem, if it has one: the state components that must
    /// equal the target at `N` and each one's tolerance (the success criterion's), used to scale
    /// the terminal correction ([`crate::control::correction`]). `None` (the default) when the
    /// terminal state is only penalised in the cost (Van der Pol, double integrator).
    fn terminal_equality(&self) -> Option<(Vec<usize>, Vec<f64>)> {
        None
    }
    /// The glide-slope state constraint `tan(gamma) |r_xy - r_t,xy| <= r_z - r_t,z` on the
    /// position rows 0..3, as `tan(gamma)` (descent; Acikmese & Ploen 2007, docs/problems.md);
    /// `None` (the default) for problems without one. The terminal correction keeps its interior
    /// nodes inside it.
    fn glide_slope_tan(&self) -> Option<f64> {
        None
    }
    /// The problem's cost as a quadratic tracking cost, if it is one: `(Q, R, Q_f)` with
    /// `J = sum_{k<N} (x_k - x_t)' Q (x_k - x_t) + R |u_k|^2 + (x_N - x_t)' Q_f (x_N - x_t)`
    /// (diagonal Q, Q_f of length n; scalar R), used by the Gauss-Newton steps on the cost
    /// ([`crate::problems::cost_gauss_newton_refine`]).
    /// `None` (the default) otherwise.
    fn quadratic_cost(&self) -> Option<(Vec<f64>, f64, Vec<f64>)> {
        None
    }

    /// One RK4 step of length `dt` [s] with `u` held constant (zero-order hold).
    fn step(&self, x: &DVector<f64>, u: &DVector<f64>, dt: f64) -> DVector<f64> {
        let k1 = self.f(x, u);
        let k2 = self.f(&(x + &k1 * (0.5 * dt)), u);
        let k3 = self.f(&(x + &k2 * (0.5 * dt)), u);
        let k4 = self.f(&(x + &k3 * dt), u);
        x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0)
    }

    /// Exact Jacobians `(A = d step / dx [n, n], B = d step / du [n, m])` of one RK4 step
    /// ([`Problem::step`]), by the chain rule through the four stages.
    fn step_jacobian(&self, x: &DVector<f64>, u: &DVector<f64>, dt: f64) -> (DMatrix<f64>, DMatrix<f64>) {
        let n = x.len();
        let eye = DMatrix::<f64>::identity(n, n);
        let k1 = self.f(x, u);
        let (fx1, fu1) = self.f_jacobian(x, u);
        let (k1x, k1u) = (fx1, fu1);
        let x2 = x + &k1 * (0.5 * dt);
        let k2 = self.f(&x2, u);
        let (fx2, fu2) = self.f_jacobian(&x2, u);
        let k2x = &fx2 * (&eye + &k1x * (0.5 * dt));
        let k2u = &fx2 * &k1u * (0.5 * dt) + fu2;
        let x3 = x + &k2 * (0.5 * dt);
        let k3 = self.f(&x3, u);
        let (fx3, fu3) = self.f_jacobian(&x3, u);
        let k3x = &fx3 * (&eye + &k2x * (0.5 * dt));
        let k3u = &fx3 * &k2u * (0.5 * dt) + fu3;
        let x4 = x + &k3 * dt;
        let (fx4, fu4) = self.f_jacobian(&x4, u);
        let k4x = &fx4 * (&eye + &k3x * dt);
        let k4u = &fx4 * &k3u * dt + fu4;
        let a = eye + (k1x + k2x * 2.0 + k3x * 2.0 + k4x) * (dt / 6.0);
        let b = (k1u + k2u * 2.0 + k3u * 2.0 + k4u) * (dt / 6.0);
        (a, b)
    }

    /// Simulates `x0` (length n) under `u` `[N', m]` (any N' >= 1) -> trajectory `[N'+1, n]`.
    ///
    /// # Errors
    /// [`ProblemError::Shape`] if `x0` or `u` has the wrong dimension.
    fn rollout(&self, x0: &DVector<f64>, u: &DMatrix<f64>, dt: f64) -> Result<DMatrix<f64>, ProblemError> {
        let (n, m) = (self.state_dim(), self.control_dim());
        check_len(self.kind(), "x0", x0.len(), n)?;
        if u.ncols() != m {
            return Err(shape_err(self.kind(), "u", format!("[N, {m}]"), format!("[{}, {}]", u.nrows(), u.ncols())));
        }
        let mut traj = DMatrix::zeros(u.nrows() + 1, n);
        traj.row_mut(0).copy_from(&x0.transpose());
        let mut x = x0.clone();
        for k in 0..u.nrows() {
            let uk = u.row(k).transpose();
            x = self.step(&x, &uk, dt);
            traj.row_mut(k + 1).copy_from(&x.transpose());
        }
        Ok(traj)
    }

    /// Batched RK4 step: `x` `[B, n]`, `u` `[B, m]`, `dt` `[B, 1]` -> `[B, n]`.
    fn step_batch(&self, x: &Tensor, u: &Tensor, dt: &Tensor) -> Tensor {
        let half = dt * 0.5;
        let k1 = self.f_batch(x, u);
        let k2 = self.f_batch(&(x + &k1 * &half), u);
        let k3 = self.f_batch(&(x + &k2 * &half), u);
        let k4 = self.f_batch(&(x + &k3 * dt), u);
        x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0)
    }

    /// Batched rollout: `x0` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]` -> `[B, N+1, n]`, on the inputs'
    /// device and dtype; differentiable with respect to `x0` and `u`.
    ///
    /// # Errors
    /// [`ProblemError::Shape`] if the shapes do not match the problem's dimensions.
    fn rollout_batch(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Result<Tensor, ProblemError> {
        let (n, m) = (self.state_dim() as i64, self.control_dim() as i64);
        let (xs, us, ds) = (x0.size(), u.size(), dt.size());
        let ok = xs.len() == 2 && xs[1] == n && us.len() == 3 && us[2] == m && us[0] == xs[0] && ds == [xs[0]];
        if !ok {
            return Err(shape_err(self.kind(), "rollout_batch(x0, u, dt)", format!("[B, {n}], [B, N, {m}], [B]"), format!("{xs:?}, {us:?}, {ds:?}")));
        }
        let dt = dt.unsqueeze(1);
        let mut states = Vec::with_capacity(us[1] as usize + 1);
        let mut x = x0.shallow_clone();
        states.push(x.shallow_clone());
        for k in 0..us[1] {
            x = self.step_batch(&x, &u.select(1, k), &dt);
            states.push(x.shallow_clone());
        }
        Ok(Tensor::stack(&states, 1))
    }
}

/// Quadratic tracking cost shared by the 1-D problems (Van der Pol, double integrator):
/// `J = sum_{k<N} (x_k - x_t)' Q (x_k - x_t) + u_k' R u_k + (x_N - x_t)' Q_f (x_N - x_t)`,
/// diagonal `Q`, `Q_f` (length n) and scalar `R`; a plain sum without dt (the authors' setting,
/// docs/problems.md).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuadraticCost {
    pub q: Vec<f64>,
    pub r: f64,
    pub q_f: Vec<f64>,
}

impl QuadraticCost {
    pub(crate) fn eval(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_t: &DVector<f64>) -> f64 {
        let n_steps = u.nrows();
        let mut j = 0.0;
        for k in 0..=n_steps {
            let w = if k == n_steps { &self.q_f } else { &self.q };
            for (i, wi) in w.iter().enumerate() {
                let e = x[(k, i)] - x_t[i];
                j += wi * e * e;
            }
            if k < n_steps {
                j += self.r * u.row(k).norm_squared();
            }
        }
        j
    }

    pub(crate) fn eval_batch(&self, x: &Tensor, u: &Tensor, x_t: &Tensor) -> Tensor {
        let n_steps = u.size()[1];
        let kind = x.kind();
        let q = crate::tensor::const_vec(&self.q, x);
        let q_f = crate::tensor::const_vec(&self.q_f, x);
        let e = x - x_t.unsqueeze(1);
        let e2 = &e * &e;
        let stage = (e2.narrow(1, 0, n_steps) * q).sum_dim_intlist(&[1i64, 2][..], false, kind);
        let term = (e2.select(1, n_steps) * q_f).sum_dim_intlist(&[1i64][..], false, kind);
        let ctrl = (u * u).sum_dim_intlist(&[1i64, 2][..], false, kind) * self.r;
        stage + term + ctrl
    }
}

/// Box-constraint check shared by the 1-D problems.
pub(crate) fn check_box(u: &DMatrix<f64>, lower: f64, upper: f64, tol: f64) -> Vec<ConstraintViolation> {
    let mut out = Vec::new();
    for k in 0..u.nrows() {
        for &v in u.row(k).iter() {
            if !v.is_finite() {
                out.push(ConstraintViolation { node: k, kind: ViolationKind::NonFinite, amount: 0.0 });
            } else if v < lower - tol {
                out.push(ConstraintViolation { node: k, kind: ViolationKind::ControlLower, amount: lower - v });
            } else if v > upper + tol {
                out.push(ConstraintViolation { node: k, kind: ViolationKind::ControlUpper, amount: v - upper });
            }
        }
    }
    out
}

/// Flags NaN/inf states.
pub(crate) fn check_finite_states(x: &DMatrix<f64>) -> Vec<ConstraintViolation> {
    (0..x.nrows())
        .filter(|&k| x.row(k).iter().any(|v| !v.is_finite()))
        .map(|k| ConstraintViolation { node: k, kind: ViolationKind::NonFinite, amount: 0.0 })
        .collect()
}

pub(crate) fn check_len(problem: ProblemKind, what: &'static str, got: usize, expected: usize) -> Result<(), ProblemError> {
    if got == expected {
        Ok(())
    } else {
        Err(shape_err(problem, what, format!("length {expected}"), format!("length {got}")))
    }
}

pub(crate) fn shape_err(problem: ProblemKind, what: &'static str, expected: String, got: String) -> ProblemError {
    ProblemError::Shape { problem: problem_name(problem), what, expected, got }
}

fn problem_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Descent => "descent",
        ProblemKind::Vanderpol => "vanderpol",
        ProblemKind::DoubleIntegrator => "double_integrator",
    }
}

/// Projects one control `u` (length m) onto the admissible set (box clip; the exact projection
/// onto the thrust annulus and pointing cone).
pub fn project_one(u: &DVector<f64>, c: &ControlConstraint) -> DVector<f64> {
    match c {
        ControlConstraint::Box { lower, upper } => DVector::from_iterator(u.len(), u.iter().enumerate().map(|(j, v)| v.clamp(lower[j], upper[j]))),
        ControlConstraint::ThrustAnnulusCone { rho_min, rho_max, max_tilt } => PoweredDescent::project_thrust(u, *rho_min, *rho_max, *max_tilt),
    }
}

/// Projects every row of `u` `[N, m]` onto the admissible set ([`project_one`]).
pub fn project_rows(u: &DMatrix<f64>, c: &ControlConstraint) -> DMatrix<f64> {
    let mut out = u.clone();
    for k in 0..u.nrows() {
        out.row_mut(k).copy_from(&project_one(&u.row(k).transpose(), c).transpose());
    }
    out
}
