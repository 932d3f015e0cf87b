//! Van der Pol: sequential convex programming (SCP) with a trust region, each subproblem a QP on
//! Clarabel.
//!
//! The decision variable is the control sequence `U` (`[N]`, box-bounded). At the iterate `U_bar`
//! the RK4 rollout is linearised exactly (`x_k ~ x_bar_k + G_k dU`, `G_{k+1} = A_k G_k + B_k e_k'`
//! with the RK4 step Jacobians), the quadratic cost becomes the convex QP (Gauss-Newton model)
//!
//! `min_d  J_bar + 2 f'd + d'H d`,  `H = sum_k G_k' W_k G_k + R I`,  `f = sum_k G_k' W_k (x_bar_k - x_t) + R U_bar`,
//!
//! subject to `u_min <= U_bar + d <= u_max` and `|d|_inf <= Delta` (trust region). Its gradient at
//! `d = 0` is the exact gradient of the reduced cost `J(U)`, so a fixed point is a first-order
//! (KKT) point of the true problem. Steps are accepted by the ratio of actual to predicted decrease
//! (Nocedal & Wright, "Numerical Optimization", Alg. 4.1): accept if rho > 0.1; enlarge Delta if
//! rho > 0.75 on the boundary; shrink it if rho < 0.25.
//!
//! **Convergence test:** the projected gradient `|U - clip(U - grad J, u_min, u_max)|_inf <=
//! kkt_tol * (1 + |J|)`. Several initial guesses (zero control, and a saturated feedback law) are
//! tried and the lowest converged cost kept; an unconverged run is never returned as optimal.

use std::time::Instant;

use clarabel::solver::{DefaultSolver, IPSolver, SupportedConeT};
use nalgebra::{DMatrix, DVector};

use super::sparse::{dense_triu, Triplets};
use super::{check_clarabel, clarabel_settings, Instance, OcpSolver, Solution, SolveError, SolverSettings};
use crate::config::positive;
use crate::error::ConfigError;
use crate::problems::{check_len, Problem, VanDerPol};

/// The SCP solver for Van der Pol.
pub struct ScpSolver {
    problem: VanDerPol,
    settings: SolverSettings,
    kkt_tol: f64,
    qp: Option<DefaultSolver<f64>>,
}

impl std::fmt::Debug for ScpSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScpSolver").field("settings", &self.settings).field("kkt_tol", &self.kkt_tol).finish()
    }
}

/// Outcome of one SCP run from one initial guess.
struct Run {
    u: DVector<f64>,
    cost: f64,
    iterations: u32,
    qp_iterations: u32,
}

impl ScpSolver {
    /// Default KKT tolerance (relative projected-gradient norm).
    pub const DEFAULT_KKT_TOL: f64 = 1e-7;

    /// A solver for `problem`; `settings.tol` is the QP tolerance, `kkt_tol` the SCP one.
    ///
    /// # Errors
    /// [`ConfigError`] for invalid settings.
    pub fn new(problem: VanDerPol, settings: SolverSettings, kkt_tol: f64) -> Result<Self, ConfigError> {
        settings.validate()?;
        positive("solver.kkt_tol", kkt_tol)?;
        Ok(Self { problem, settings, kkt_tol, qp: None })
    }

    /// The problem.
    pub fn problem(&self) -> &VanDerPol {
        &self.problem
    }

    /// Reduced cost `J(U)` and its exact gradient `dJ/dU` (`[N]`) at `u` (`[N]`), for the
    /// optimality checks.
    ///
    /// # Errors
    /// [`SolveError::Problem`] for wrong dimensions.
    pub fn cost_and_gradient(&self, inst: &Instance, u: &DVector<f64>, dt: f64) -> Result<(f64, DVector<f64>), SolveError> {
        let (j, _h, f) = self.model(inst, u, dt)?;
        Ok((j, f * 2.0))
    }

    /// The Gauss-Newton model at `u`: `(J, H, f)`.
    fn model(&self, inst: &Instance, u: &DVector<f64>, dt: f64) -> Result<(f64, DMatrix<f64>, DVector<f64>), SolveError> {
        let p = &self.problem;
        let prm = p.params();
        let big_n = p.horizon();
        let um = DMatrix::from_column_slice(big_n, 1, u.as_slice());
        let x = p.rollout(&inst.x0, &um, dt)?;
        let j = p.cost(&x, &um, &inst.x_target, dt);
        let q = [prm.q[0], prm.q[1]];
        let q_f = [prm.q[0] * prm.q_f_scale, prm.q[1] * prm.q_f_scale];
        let mut h = DMatrix::<f64>::identity(big_n, big_n) * prm.r;
        let mut f = u * prm.r;
        let mut g = DMatrix::<f64>::zeros(2, big_n); // G_0 = 0
        for k in 0..=big_n {
            let w = if k == big_n { q_f } else { q };
            if k > 0 {
                // x_k's sensitivity: accumulate in H and f
                let e = [x[(k, 0)] - inst.x_target[0], x[(k, 1)] - inst.x_target[1]];
                let mut wg = g.clone();
                for (i, wi) in w.iter().enumerate() {
                    wg.row_mut(i).scale_mut(*wi);
                }
                h.gemm_tr(1.0, &g, &wg, 1.0);
                for i in 0..2 {
                    f.axpy(w[i] * e[i], &g.row(i).transpose(), 1.0);
                }
            }
            if k < big_n {
                let xk = x.row(k).transpose();
                let (a, b) = p.step_jacobian(&xk, &DVector::from_element(1, u[k]), dt);
                let mut next = &a * &g;
                next[(0, k)] += b[(0, 0)];
                next[(1, k)] += b[(1, 0)];
                g = next;
            }
        }
        Ok((j, (&h + h.transpose()) * 0.5, f))
    }

    fn run(&mut self, inst: &Instance, u0: DVector<f64>, dt: f64, deadline: Instant) -> Result<Run, SolveError> {
        let big_n = self.problem.horizon();
        let (lo, hi) = self.problem.bounds();
        let mut u = u0.map(|v| v.clamp(lo, hi));
        let mut delta = 0.5 * (hi - lo);
        let (mut j, mut h, mut f) = self.model(inst, &u, dt)?;
        let mut qp_iterations = 0;
        for it in 0..self.settings.max_iter {
            let grad = &f * 2.0;
            let pg = DVector::from_fn(big_n, |i, _| u[i] - (u[i] - grad[i]).clamp(lo, hi));
            if pg.amax() <= self.kkt_tol * (1.0 + j.abs()) {
                return Ok(Run { u, cost: j, iterations: it, qp_iterations });
            }
            if Instant::now() >= deadline {
                return Err(SolveError::TimeLimit { limit_s: self.settings.time_limit_s });
            }
            let d_lo = DVector::from_fn(big_n, |i, _| (lo - u[i]).max(-delta));
            let d_hi = DVector::from_fn(big_n, |i, _| (hi - u[i]).min(delta));
            let (d, qp_it) = self.solve_qp(&h, &f, &d_lo, &d_hi, deadline)?;
            qp_iterations += qp_it;
            let predicted = -(2.0 * f.dot(&d) + (d.transpose() * &h * &d)[(0, 0)]);
            let cand = &u + &d;
            let (j_new, h_new, f_new) = self.model(inst, &cand, dt)?;
            let actual = j - j_new;
            let rho = if predicted > 0.0 { actual / predicted } else { -1.0 };
            if predicted <= 1e-15 * (1.0 + j.abs()) && actual >= 0.0 {
                // The model predicts no further decrease: accept (a KKT point within QP tolerance).
                u = cand;
                (j, h, f) = (j_new, h_new, f_new);
                continue;
            }
            if rho > 0.1 {
                let on_boundary = d.amax() >= 0.99 * delta;
                u = cand;
                (j, h, f) = (j_new, h_new, f_new);
                if rho > 0.75 && on_boundary {
                    delta = (2.0 * delta).min(hi - lo);
                }
            } else {
                delta *= 0.25;
                if delta < 1e-12 {
                    return Err(SolveError::MaxIterations { iterations: it + 1, last_step: d.amax() });
                }
            }
        }
        let grad = &f * 2.0;
        let pg = DVector::from_fn(big_n, |i, _| u[i] - (u[i] - grad[i]).clamp(lo, hi));
        Err(SolveError::MaxIterations { iterations: self.settings.max_iter, last_step: pg.amax() })
    }

    /// One QP: `min d'Hd + 2f'd` s.t. `d_lo <= d <= d_hi`; the Clarabel workspace is built once and
    /// updated in place afterwards (same sparsity).
    fn solve_qp(
        &mut self,
        h: &DMatrix<f64>,
        f: &DVector<f64>,
        d_lo: &DVector<f64>,
        d_hi: &DVector<f64>,
        deadline: Instant,
    ) -> Result<(DVector<f64>, u32), SolveError> {
        let n = f.len();
        let p = dense_triu(&(h * 2.0));
        let q: Vec<f64> = (f * 2.0).iter().copied().collect();
        let b: Vec<f64> = d_hi.iter().copied().chain(d_lo.iter().map(|v| -v)).collect();
        let time_left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        let reuse = self.qp.as_ref().is_some_and(|s| s.solution.x.len() == n);
        if reuse {
            let s = self.qp.as_mut().expect("checked");
            s.update_P(&p.nzval).map_err(|e| SolveError::Numerical(format!("QP update: {e:?}")))?;
            s.update_q(&q).map_err(|e| SolveError::Numerical(format!("QP update: {e:?}")))?;
            s.update_b(&b).map_err(|e| SolveError::Numerical(format!("QP update: {e:?}")))?;
            s.update_settings(clarabel_settings(&self.settings, time_left)).map_err(|e| SolveError::Numerical(format!("{e:?}")))?;
        } else {
            let mut a = Triplets::new(2 * n, n);
            for k in 0..n {
                a.push(k, k, 1.0);
                a.push(n + k, k, -1.0);
            }
            let cones = [SupportedConeT::NonnegativeConeT(2 * n)];
            let s = DefaultSolver::new(&p, &q, &a.to_csc(), &b, &cones, clarabel_settings(&self.settings, time_left))
                .map_err(|e| SolveError::Numerical(format!("QP setup: {e}")))?;
            self.qp = Some(s);
        }
        let s = self.qp.as_mut().expect("built above");
        s.solve();
        check_clarabel(s.solution.status, s.solution.iterations, self.settings.time_limit_s, "SCP subproblem")?;
        Ok((DVector::from_column_slice(&s.solution.x), s.solution.iterations))
    }

    /// Initial guesses: zero control, and the saturated feedback law of [`crate::baseline::fly_pd`].
    fn initial_guesses(&self, inst: &Instance, dt: f64) -> Vec<DVector<f64>> {
        let big_n = self.problem.horizon();
        let pd = crate::baseline::fly_pd(&self.problem, &inst.x0, &inst.x_target, dt, Some(self.problem.params().mu));
        vec![DVector::zeros(big_n), DVector::from_column_slice(pd.u.as_slice())]
    }
}

impl OcpSolver for ScpSolver {
    fn solve(&mut self, inst: &Instance) -> Result<Solution, SolveError> {
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_secs_f64(self.settings.time_limit_s);
        let kind = self.problem.kind();
        check_len(kind, "x0", inst.x0.len(), 2)?;
        check_len(kind, "x_target", inst.x_target.len(), 2)?;
        let t_go = inst.t_go.unwrap_or_else(|| self.problem.default_t_go());
        let dt = self.problem.dt_for(t_go);
        let mut best: Option<Run> = None;
        let mut last_err = None;
        let (mut iterations, mut subproblems) = (0, 0);
        for guess in self.initial_guesses(inst, dt) {
            match self.run(inst, guess, dt, deadline) {
                Ok(run) => {
                    iterations += run.iterations;
                    subproblems += run.iterations;
                    let _ = run.qp_iterations;
                    if best.as_ref().is_none_or(|b| run.cost < b.cost) {
                        best = Some(run);
                    }
                }
                Err(e @ SolveError::TimeLimit { .. }) => {
                    if best.is_some() {
                        break; // keep the converged run from an earlier guess
                    }
                    return Err(e);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let run = match best {
            Some(r) => r,
            None => return Err(last_err.unwrap_or(SolveError::Numerical("no initial guess".into()))),
        };
        let u = DMatrix::from_column_slice(self.problem.horizon(), 1, run.u.as_slice());
        let x = self.problem.rollout(&inst.x0, &u, dt)?;
        Ok(Solution { x_model: x.clone(), x, u, cost: run.cost, t_go, dt, iterations, subproblems, solve_time: start.elapsed() })
    }
}
