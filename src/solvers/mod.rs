//! Classical optimal-control solvers: the demonstrations TRC learns from, the optimality
//! reference it is judged against, and a slow fallback policy.
//!
//! Every solver has the same shape (after Clarabel.rs and OpEn):
//! - settings ([`SolverSettings`]) validated on construction, including a wall-clock limit;
//! - a workspace allocated once and reused across solves (receding-horizon use);
//! - [`OcpSolver::solve`] returning `Result<Solution, SolveError>`: `Ok` only for a solution
//!   certified optimal to the solver's tolerance, so an unconverged or infeasible outcome cannot be
//!   mistaken for an optimum.
//!
//! Implementations: [`lqr`] (double integrator: Riccati LQR and the box-constrained QP),
//! [`scp`] (Van der Pol: sequential convex programming with a trust region), [`lcvx`] (powered
//! descent: lossless convexification with a t_f search).

pub mod lcvx;
pub mod lqr;
pub mod scp;
pub mod sparse;

use std::time::Duration;

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::positive;
use crate::error::{ConfigError, ProblemError};

/// One optimal-control instance: start, target, time-to-go.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Initial state x0, length n.
    pub x0: DVector<f64>,
    /// Target state x_target, length n.
    pub x_target: DVector<f64>,
    /// Time-to-go t_go [s]; `None` lets the solver choose (descent: minimum-fuel t_f search;
    /// the fixed-horizon problems: N * dt).
    pub t_go: Option<f64>,
}

/// Settings shared by every solver. Defaults: tolerance 1e-8, 200 iterations, 10 s wall clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SolverSettings {
    /// Convergence tolerance of the cone solver (Clarabel's relative duality gap and
    /// feasibility). SCP's own KKT tolerance is separate (`ScpSolver::new`).
    pub tol: f64,
    /// Iteration limit (interior-point iterations per cone solve; outer iterations for SCP).
    pub max_iter: u32,
    /// Wall-clock limit for one `solve` call [s].
    pub time_limit_s: f64,
}

impl Default for SolverSettings {
    fn default() -> Self {
        Self { tol: 1e-8, max_iter: 200, time_limit_s: 10.0 }
    }
}

impl SolverSettings {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("solver.tol", self.tol)?;
        if self.tol >= 1e-2 {
            return Err(ConfigError::invalid("solver.tol", format!("{} is too loose for an optimality reference; use <= 1e-3", self.tol)));
        }
        if self.max_iter == 0 {
            return Err(ConfigError::invalid("solver.max_iter", "must be >= 1"));
        }
        positive("solver.time_limit_s", self.time_limit_s)
    }

    /// With a different wall-clock limit.
    pub fn with_time_limit(mut self, seconds: f64) -> Self {
        self.time_limit_s = seconds;
        self
    }
}

/// A certified-optimal solution.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Optimal controls u* `[N, m]` (descent: thrust [N], held over each step).
    pub u: DMatrix<f64>,
    /// States `[N+1, n]` re-simulated through the problem's RK4 dynamics under `u`.
    pub x: DMatrix<f64>,
    /// The solver's own predicted states `[N+1, n]` (its discretisation; equal to `x` for the
    /// double integrator; descent: the exact-ZOH log-mass model).
    pub x_model: DMatrix<f64>,
    /// Optimal cost J* in the problem's cost ([`crate::problems::Problem::cost`]) of (`x`, `u`).
    pub cost: f64,
    /// Time-to-go used [s] (descent: the optimal t_f).
    pub t_go: f64,
    /// Step dt = t_go / N [s].
    pub dt: f64,
    /// Iterations (interior-point iterations summed over cone solves; SCP outer iterations).
    pub iterations: u32,
    /// Number of convex (QP / SOCP) solves.
    pub subproblems: u32,
    /// Wall time of the solve.
    pub solve_time: Duration,
}

/// Why a solve produced no certified optimum.
#[derive(Debug, Error)]
pub enum SolveError {
    /// No feasible solution exists (certificate from the cone solver, or for every t_f tried).
    #[error("infeasible: {reason}")]
    Infeasible {
        /// What was infeasible, when known.
        reason: String,
    },
    /// The iteration limit was reached before convergence.
    #[error("not converged after {iterations} iterations (last step {last_step:e}); raise solver.max_iter or check the instance")]
    MaxIterations {
        /// Iterations done.
        iterations: u32,
        /// Norm of the last step or residual.
        last_step: f64,
    },
    /// The wall-clock limit was reached.
    #[error("time limit {limit_s} s reached; raise solver.time_limit_s")]
    TimeLimit {
        /// The limit [s].
        limit_s: f64,
    },
    /// The cone solver reported a numerical problem.
    #[error("numerical failure in the cone solver: {0}")]
    Numerical(String),
    /// The instance does not fit the problem.
    #[error(transparent)]
    Problem(#[from] ProblemError),
}

/// An optimal-control solver for one problem, with a reusable workspace.
pub trait OcpSolver {
    /// Solves one instance.
    ///
    /// # Errors
    /// [`SolveError`] whenever the result is not certified optimal.
    fn solve(&mut self, instance: &Instance) -> Result<Solution, SolveError>;
}

/// The optimality-reference solver of a configured problem: box QP (double integrator), SCP
/// (Van der Pol), LCvx with t_f search (descent).
///
/// # Errors
/// [`ConfigError`] if the problem or settings are invalid.
pub fn for_problem(cfg: &crate::config::ProblemConfig, settings: SolverSettings) -> Result<Box<dyn OcpSolver>, ConfigError> {
    use crate::config::ProblemKind as K;
    cfg.validate()?;
    Ok(match cfg.name {
        K::DoubleIntegrator => Box::new(lqr::DoubleIntegratorSolver::new(crate::problems::DoubleIntegrator::new(cfg.double_integrator.clone())?, settings)?),
        K::Vanderpol => Box::new(scp::ScpSolver::new(crate::problems::VanDerPol::new(cfg.vanderpol.clone())?, settings, scp::ScpSolver::DEFAULT_KKT_TOL)?),
        K::Descent => Box::new(lcvx::LcvxSolver::new(crate::problems::PoweredDescent::new(cfg.descent.clone())?, settings, lcvx::TfSearch::default())?),
    })
}

/// Maps a Clarabel status to `Ok(())` for a solved problem or the matching [`SolveError`].
pub(crate) fn check_clarabel(status: clarabel::solver::SolverStatus, iterations: u32, limit_s: f64, what: &str) -> Result<(), SolveError> {
    use clarabel::solver::SolverStatus as S;
    match status {
        S::Solved => Ok(()),
        S::PrimalInfeasible | S::AlmostPrimalInfeasible => Err(SolveError::Infeasible { reason: format!("{what}: primal infeasibility certificate") }),
        S::DualInfeasible | S::AlmostDualInfeasible => Err(SolveError::Numerical(format!("{what}: dual infeasible (unbounded)"))),
        S::MaxIterations => Err(SolveError::MaxIterations { iterations, last_step: f64::NAN }),
        S::MaxTime => Err(SolveError::TimeLimit { limit_s }),
        other => Err(SolveError::Numerical(format!("{what}: {other:?}"))),
    }
}

/// Clarabel settings from ours: quiet, tolerances, limits; presolve off so data can be updated in place.
pub(crate) fn clarabel_settings(s: &SolverSettings, time_left_s: f64) -> clarabel::solver::DefaultSettings<f64> {
    clarabel::solver::DefaultSettings {
        verbose: false,
        max_iter: s.max_iter,
        time_limit: time_left_s.max(1e-3),
        tol_gap_abs: s.tol,
        tol_gap_rel: s.tol,
        tol_feas: s.tol,
        tol_ktratio: 1e-6,
        presolve_enable: false,
        ..Default::default()
    }
}
