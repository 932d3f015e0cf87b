//! Double integrator: finite-horizon discrete LQR by backward Riccati recursion, the batch
//! (condensed) least-squares solution, and the box-constrained problem as a QP on Clarabel.
//!
//! Problem (docs/problems.md): `x_{k+1} = A x_k + B u_k` (exact ZOH), cost
//! `J = sum_{k<N} (x_k - x_t)' Q (x_k - x_t) + R u_k^2 + (x_N - x_t)' Q_f (x_N - x_t)`, `|u_k| <= u_max`.
//! Where no bound is active the QP optimum equals LQR (tests hold them to 1e-8).

use std::time::Instant;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSolver, IPSolver, SupportedConeT};
use nalgebra::{DMatrix, DVector};

use super::sparse::{dense_triu, Triplets};
use super::{check_clarabel, clarabel_settings, Instance, OcpSolver, Solution, SolveError, SolverSettings};
use crate::error::ConfigError;
use crate::problems::{check_len, DoubleIntegrator, Problem};

/// LQR solution: feedback gains and the resulting open-loop sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct LqrSolution {
    /// Controls `[N, m]`.
    pub u: DMatrix<f64>,
    /// States `[N+1, n]`.
    pub x: DMatrix<f64>,
    /// Feedback gains K_k `[m, n]`, `u_k = -K_k x_k - k_k`.
    pub gains: Vec<DMatrix<f64>>,
    /// Feed-forward terms k_k `[m]` (non-zero when tracking a target).
    pub feedforward: Vec<DVector<f64>>,
}

/// A finite-horizon linear-quadratic problem: `x_{k+1} = A x_k + B u_k` over N steps, cost
/// `sum_{k<N} (x_k - x_t)' Q (x_k - x_t) + u_k' R u_k + (x_N - x_t)' Q_f (x_N - x_t)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lq {
    /// A `[n, n]`.
    pub a: DMatrix<f64>,
    /// B `[n, m]`.
    pub b: DMatrix<f64>,
    /// Q `[n, n]`.
    pub q: DMatrix<f64>,
    /// R `[m, m]`.
    pub r: DMatrix<f64>,
    /// Q_f `[n, n]`.
    pub q_f: DMatrix<f64>,
    /// Horizon N.
    pub horizon: usize,
}

/// Finite-horizon discrete LQR with a target, by backward Riccati recursion (e.g. Anderson & Moore,
/// "Optimal Control: Linear Quadratic Methods", §2.4, with the affine tracking term):
///
/// `S_k = R + B' P B`, `K_k = S_k^-1 B' P A`, `k_k = S_k^-1 B' p`,
/// `P_k = Q + A' P (A - B K_k)`, `p_k = -Q x_t + (A - B K_k)' p`, with `P_N = Q_f`, `p_N = -Q_f x_t`.
///
/// Returns the optimal sequence from `x0` (length n) to the target `x_t`.
///
/// # Errors
/// [`SolveError::Numerical`] if `R + B' P B` is singular.
pub fn lqr(lq: &Lq, x0: &DVector<f64>, x_t: &DVector<f64>) -> Result<LqrSolution, SolveError> {
    let Lq { a, b, q, r, q_f, horizon } = lq;
    let horizon = *horizon;
    let mut p = q_f.clone();
    let mut pv = -(q_f * x_t);
    let mut gains = vec![DMatrix::zeros(b.ncols(), a.nrows()); horizon];
    let mut ff = vec![DVector::zeros(b.ncols()); horizon];
    for k in (0..horizon).rev() {
        let s = r + b.transpose() * &p * b;
        let s_inv = s.try_inverse().ok_or_else(|| SolveError::Numerical("R + B'PB is singular".into()))?;
        let kk = &s_inv * b.transpose() * &p * a;
        let kf = &s_inv * b.transpose() * &pv;
        let acl = a - b * &kk;
        pv = -(q * x_t) + acl.transpose() * &pv;
        p = q + a.transpose() * &p * &acl;
        p = (&p + p.transpose()) * 0.5;
        gains[k] = kk;
        ff[k] = kf;
    }
    let mut x = DMatrix::zeros(horizon + 1, a.nrows());
    let mut u = DMatrix::zeros(horizon, b.ncols());
    let mut xk = x0.clone();
    x.row_mut(0).copy_from(&xk.transpose());
    for k in 0..horizon {
        let uk = -(&gains[k] * &xk) - &ff[k];
        xk = a * &xk + b * &uk;
        u.row_mut(k).copy_from(&uk.transpose());
        x.row_mut(k + 1).copy_from(&xk.transpose());
    }
    Ok(LqrSolution { u, x, gains, feedforward: ff })
}

/// The condensed (batch) form of the LQ problem over `U = [u_0; ...; u_{N-1}]` (`N m`):
/// `J(U) = U' H U + 2 f' U + c`, from `X = Phi x0 + Gamma U`.
#[derive(Debug, Clone)]
pub struct Condensed {
    /// Hessian half H = Gamma' W Gamma + I_N (x) R, `[N m, N m]`.
    pub h: DMatrix<f64>,
    /// Linear term f = Gamma' W (Phi x0 - X_t), `[N m]`.
    pub f: DVector<f64>,
    /// Constant c = (Phi x0 - X_t)' W (Phi x0 - X_t).
    pub c: f64,
}

/// Builds the condensed LQ problem (the "batch least-squares" form, independent of Riccati).
pub fn condense(lq: &Lq, x0: &DVector<f64>, x_t: &DVector<f64>) -> Condensed {
    let Lq { a, b, q, r, q_f, horizon } = lq;
    let horizon = *horizon;
    let (n, m) = (a.nrows(), b.ncols());
    let rows = n * (horizon + 1);
    let mut phi = DMatrix::zeros(rows, n);
    let mut gamma = DMatrix::zeros(rows, m * horizon);
    let mut ak = DMatrix::identity(n, n);
    for k in 0..=horizon {
        phi.view_mut((k * n, 0), (n, n)).copy_from(&ak);
        ak = a * &ak;
    }
    for k in 1..=horizon {
        // x_k = ... + sum_{j<k} A^{k-1-j} B u_j
        let mut apow = DMatrix::identity(n, n);
        for j in (0..k).rev() {
            gamma.view_mut((k * n, j * m), (n, m)).copy_from(&(&apow * b));
            apow = a * &apow;
        }
    }
    let mut w = DMatrix::zeros(rows, rows);
    for k in 0..=horizon {
        let blk = if k == horizon { q_f } else { q };
        w.view_mut((k * n, k * n), (n, n)).copy_from(blk);
    }
    let mut xt = DVector::zeros(rows);
    for k in 0..=horizon {
        xt.rows_mut(k * n, n).copy_from(x_t);
    }
    let e0 = &phi * x0 - xt;
    let gtw = gamma.transpose() * &w;
    let mut h = &gtw * &gamma;
    for k in 0..horizon {
        let mut blk = h.view_mut((k * m, k * m), (m, m));
        blk += r;
    }
    Condensed { f: &gtw * &e0, c: (e0.transpose() * &w * &e0)[(0, 0)], h }
}

/// The double-integrator solver: box-constrained QP on Clarabel (exact optimum), with LQR for the
/// unconstrained problem. The QP data for a given dt is built once and only the linear term is
/// updated per solve.
pub struct DoubleIntegratorSolver {
    problem: DoubleIntegrator,
    settings: SolverSettings,
    ws: Option<QpWorkspace>,
}

struct QpWorkspace {
    dt: f64,
    solver: DefaultSolver<f64>,
}

impl std::fmt::Debug for DoubleIntegratorSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleIntegratorSolver").field("problem", &self.problem).field("settings", &self.settings).finish()
    }
}

impl DoubleIntegratorSolver {
    /// A solver for `problem`.
    ///
    /// # Errors
    /// [`ConfigError`] if the settings are invalid.
    pub fn new(problem: DoubleIntegrator, settings: SolverSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        Ok(Self { problem, settings, ws: None })
    }

    /// The LQ data for step `dt`.
    fn lq(&self, dt: f64) -> Lq {
        let prm = self.problem.params();
        let (a, b) = self.problem.discrete(dt);
        Lq {
            a: DMatrix::from_iterator(2, 2, a.iter().copied()),
            b: DMatrix::from_iterator(2, 1, b.iter().copied()),
            q: DMatrix::from_diagonal(&DVector::from_row_slice(&prm.q)),
            r: DMatrix::from_element(1, 1, prm.r),
            q_f: DMatrix::from_diagonal(&DVector::from_row_slice(&prm.q_f)),
            horizon: self.problem.horizon(),
        }
    }

    fn dt(&self, instance: &Instance) -> f64 {
        self.problem.dt_for(instance.t_go.unwrap_or_else(|| self.problem.default_t_go()))
    }

    /// The unconstrained optimum (LQR by Riccati recursion), ignoring `|u| <= u_max`.
    ///
    /// # Errors
    /// [`SolveError::Problem`] for wrong dimensions; [`SolveError::Numerical`] if singular.
    pub fn lqr(&self, instance: &Instance) -> Result<LqrSolution, SolveError> {
        check_len(self.problem.kind(), "x0", instance.x0.len(), 2)?;
        check_len(self.problem.kind(), "x_target", instance.x_target.len(), 2)?;
        lqr(&self.lq(self.dt(instance)), &instance.x0, &instance.x_target)
    }

    /// The condensed LQ data for an instance (see [`condense`]).
    pub fn condensed(&self, instance: &Instance) -> Condensed {
        condense(&self.lq(self.dt(instance)), &instance.x0, &instance.x_target)
    }
}

impl OcpSolver for DoubleIntegratorSolver {
    fn solve(&mut self, instance: &Instance) -> Result<Solution, SolveError> {
        let start = Instant::now();
        check_len(self.problem.kind(), "x0", instance.x0.len(), 2)?;
        check_len(self.problem.kind(), "x_target", instance.x_target.len(), 2)?;
        let dt = self.dt(instance);
        let big_n = self.problem.horizon();
        let cond = self.condensed(instance);
        let q_lin: Vec<f64> = (&cond.f * 2.0).iter().copied().collect();
        let rebuild = self.ws.as_ref().is_none_or(|w| w.dt != dt);
        if rebuild {
            // min 1/2 U'(2H)U + (2f)'U  s.t.  U <= u_max, -U <= u_max
            let p: CscMatrix<f64> = dense_triu(&(&cond.h * 2.0));
            let mut a = Triplets::new(2 * big_n, big_n);
            for k in 0..big_n {
                a.push(k, k, 1.0);
                a.push(big_n + k, k, -1.0);
            }
            let b = vec![self.problem.params().u_max; 2 * big_n];
            let cones = [SupportedConeT::NonnegativeConeT(2 * big_n)];
            let settings = clarabel_settings(&self.settings, self.settings.time_limit_s);
            let solver = DefaultSolver::new(&p, &q_lin, &a.to_csc(), &b, &cones, settings).map_err(|e| SolveError::Numerical(format!("QP setup: {e}")))?;
            self.ws = Some(QpWorkspace { dt, solver });
        }
        let ws = self.ws.as_mut().expect("workspace built above");
        if !rebuild {
            ws.solver.update_q(&q_lin).map_err(|e| SolveError::Numerical(format!("QP update: {e:?}")))?;
        }
        ws.solver.solve();
        let sol = &ws.solver.solution;
        check_clarabel(sol.status, sol.iterations, self.settings.time_limit_s, "double-integrator QP")?;
        let u = DMatrix::from_column_slice(big_n, 1, &sol.x);
        let x = self.problem.rollout(&instance.x0, &u, dt)?;
        let cost = self.problem.cost(&x, &u, &instance.x_target, dt);
        Ok(Solution { x_model: x.clone(), x, u, cost, t_go: dt * big_n as f64, dt, iterations: sol.iterations, subproblems: 1, solve_time: start.elapsed() })
    }
}
