//! Powered descent by lossless convexification (LCvx): one second-order cone program per final
//! time on Clarabel, and a search over the final time t_f for minimum fuel.
//!
//! Formulation (Acikmese & Ploen 2007, "Convex programming approach to powered descent guidance
//! for Mars landing", JGCD 30(5), problem 4 and §III; Blackmore, Acikmese & Scharf 2010 §III for
//! the discretisation): with `z = ln m`, `u = T / m`, slack `sigma >= |u|`, on N intervals of
//! `dt = t_f / N` with (u, sigma) held per interval (exact ZOH of the now linear dynamics,
//! [`PoweredDescent::lcvx_discretization`]):
//!
//! - minimise `sum_k sigma_k dt` (= (ln m0 - ln m_N) / alpha, i.e. fuel);
//! - `|u_k| <= sigma_k` (the relaxation), pointing `u_k,z >= cos(theta) sigma_k`;
//! - thrust bounds, with `z0_k = ln(m0 - alpha rho2 t_k)` (eq. 34-37):
//!   `rho1 e^{-z0_k} [1 - (z_k - z0_k) + (z_k - z0_k)^2 / 2] <= sigma_k <= rho2 e^{-z0_k} [1 - (z_k - z0_k)]`
//!   (the lower bound as a rotated second-order cone);
//! - `z0_k <= z_k <= ln(m0 - alpha rho1 t_k)`, `z_N >= ln m_dry`;
//! - glide slope `tan(gamma) |r_xy - r_t,xy| <= r_z - r_t,z`, speed `|v_k| <= v_max` (interior nodes);
//! - `r_0, v_0, z_0` fixed; `r_N = r_t`, `v_N = v_t`.
//!
//! The thrust returned is `T_k = u_k e^{z_k}`, held per step, re-simulated through the RK4 plant.
//! Losslessness (`|u_k| = sigma_k`) is checked on every solution: a relaxed solution that is not
//! lossless (relative gap above [`LOSSLESS_TOL`]) would fly a thrust below rho1, so the t_f search
//! treats it as unusable, and an instance with no lossless t_f is reported infeasible with that reason.
//! t_f search: fuel(t_f) is evaluated on a grid over `[m_dry |v0| / rho2, (m0 - m_dry) / (alpha rho1)]`
//! (Acikmese & Ploen 2007 eq. 56), then refined by golden-section search around the best grid point.

use std::time::Instant;

use clarabel::solver::{DefaultSolver, IPSolver, SupportedConeT};
use nalgebra::{DMatrix, DVector};

use super::sparse::Triplets;
use super::{check_clarabel, clarabel_settings, Instance, OcpSolver, Solution, SolveError, SolverSettings};
use crate::error::ConfigError;
use crate::problems::{check_len, PoweredDescent, Problem};

/// What an LCvx solve found beyond the solution itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LcvxReport {
    /// Largest relative slack gap `max_k (sigma_k - |u_k|) / sigma_k` (0 = lossless).
    pub lossless_gap: f64,
    /// Landing position error after re-simulating the thrust through the RK4 plant [m].
    pub resim_position_error: f64,
    /// Landing velocity error after re-simulation [m/s].
    pub resim_velocity_error: f64,
    /// Every t_f evaluated: `(t_f [s], fuel [kg] of the relaxed solution, or None if infeasible or
    /// failed)`, sorted by t_f (lossy solutions, rejected by the search, keep their fuel here).
    pub fuel_vs_tf: Vec<(f64, Option<f64>)>,
    /// Cone solves whose relaxed solution was not lossless (rejected by the t_f search).
    pub lossy_evaluations: u32,
}

/// Settings of the t_f search.
#[derive(Debug, Clone, PartialEq)]
pub struct TfSearch {
    /// Grid points over the t_f bracket before golden-section refinement. Default 8.
    pub grid: usize,
    /// Golden-section stops when the bracket is shorter than this [s]. Default 0.05.
    pub tol_s: f64,
}

impl Default for TfSearch {
    fn default() -> Self {
        Self { grid: 8, tol_s: 0.05 }
    }
}

/// A known time profile of the thrust the engines deliver per unit commanded: `scale` always
/// (a thrust magnitude error), times `1 - loss` on `[from_s, to_s)` (a thrust loss), time from the
/// instance's `x0` [s]. With it, the bounds hold on the delivered thrust:
/// `f(t) rho1 <= |T| <= f(t) rho2` (the mass flow follows the delivered thrust, as in the plant,
/// `src/plant.rs`). The clairvoyant optimum of a disturbed episode: what an oracle that knew the
/// fault could achieve (`closed_loop` uses it to tell unrecoverable episodes from misses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrustProfile {
    /// Delivered / commanded thrust outside the loss (1 = nominal).
    pub scale: f64,
    /// Fraction of thrust lost on `[from_s, to_s)`, in [0, 1).
    pub loss: f64,
    /// Start of the loss [s].
    pub from_s: f64,
    /// End of the loss [s].
    pub to_s: f64,
}

impl ThrustProfile {
    /// Mean factor `f` over `[t0, t1]` [s] (the bound of a zero-order-hold step).
    pub fn mean(&self, t0: f64, t1: f64) -> f64 {
        let overlap = (t1.min(self.to_s) - t0.max(self.from_s)).max(0.0);
        self.scale * (1.0 - self.loss * overlap / (t1 - t0).max(1e-12))
    }

    /// Smallest factor at any time.
    pub fn min(&self) -> f64 {
        self.scale * if self.to_s > self.from_s { 1.0 - self.loss } else { 1.0 }
    }
}

/// The LCvx solver; the cone program's structure is built once and its values updated in place
/// for every t_f and instance.
pub struct LcvxSolver {
    problem: PoweredDescent,
    settings: SolverSettings,
    search: TfSearch,
    socp: Option<DefaultSolver<f64>>,
    profile: Option<ThrustProfile>,
}

impl std::fmt::Debug for LcvxSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LcvxSolver").field("settings", &self.settings).field("search", &self.search).finish()
    }
}

/// One SOCP's data.
struct Socp {
    a: Triplets,
    b: Vec<f64>,
    q: Vec<f64>,
    cones: Vec<SupportedConeT<f64>>,
}

/// One SOCP's result.
struct Fixed {
    y: DMatrix<f64>, // [N+1, 7]: r, v, z
    w: DMatrix<f64>, // [N, 4]: u, sigma
    iterations: u32,
}

impl LcvxSolver {
    /// A solver for `problem`.
    ///
    /// # Errors
    /// [`ConfigError`] for invalid settings.
    pub fn new(problem: PoweredDescent, settings: SolverSettings, search: TfSearch) -> Result<Self, ConfigError> {
        settings.validate()?;
        if search.grid < 3 {
            return Err(ConfigError::invalid("solver.tf_grid", "must be >= 3"));
        }
        crate::config::positive("solver.tf_tol_s", search.tol_s)?;
        Ok(Self { problem, settings, search, socp: None, profile: None })
    }

    /// The same solver with the thrust bounds scaled by a known time profile ([`ThrustProfile`]).
    #[must_use]
    pub fn with_thrust_profile(mut self, profile: ThrustProfile) -> Self {
        self.profile = Some(profile);
        self.socp = None;
        self
    }

    /// The problem.
    pub fn problem(&self) -> &PoweredDescent {
        &self.problem
    }

    /// The t_f bracket `[t_min, t_max]` [s] for an initial state (Acikmese & Ploen 2007 eq. 56).
    pub fn tf_bracket(&self, x0: &DVector<f64>) -> (f64, f64) {
        let p = self.problem.params();
        let speed = x0.rows(3, 3).norm();
        let t_min = (p.m_dry * speed / p.rho2()).max(1.0);
        // past m0 / (alpha rho2) the Taylor thrust bounds around z0 lose meaning: stay below it
        let t_max = ((x0[6] - p.m_dry) / (p.alpha() * p.rho1())).min(0.9 * x0[6] / (p.alpha() * p.rho2()));
        (t_min, t_max)
    }

    fn idx_y(k: usize, i: usize) -> usize {
        7 * k + i
    }

    fn idx_w(&self, k: usize, j: usize) -> usize {
        7 * (self.problem.horizon() + 1) + 4 * k + j
    }

    /// Builds the SOCP for one t_f. The push order (hence the sparsity pattern) does not depend on
    /// the data, so later builds update the live solver in place.
    fn build(&self, inst: &Instance, t_f: f64) -> Socp {
        let prm = self.problem.params();
        let big_n = self.problem.horizon();
        let dt = t_f / big_n as f64;
        let nv = 7 * (big_n + 1) + 4 * big_n;
        let d = self.problem.lcvx_discretization(dt);
        let (alpha, rho1, rho2) = (prm.alpha(), prm.rho1(), prm.rho2());
        let m0 = inst.x0[6];
        let z0 = |k: usize| (m0 - alpha * rho2 * k as f64 * dt).max(1e-6).ln();
        // the thrust profile scales both bounds per step; the upper mass bound uses its least
        let f = |k: usize| self.profile.map_or(1.0, |p| p.mean(k as f64 * dt, (k + 1) as f64 * dt));
        let f_min = self.profile.map_or(1.0, |p| p.min());
        let zmax = |k: usize| (m0 - alpha * rho1 * f_min * k as f64 * dt).max(1e-6).ln();
        let (r_t, v_t) = (inst.x_target.rows(0, 3), inst.x_target.rows(3, 3));
        let mut a = Triplets::new(0, nv);
        let mut b = Vec::new();
        let mut row = 0usize;
        let mut cones = Vec::new();
        let mut add = |a: &mut Triplets, entries: &[(usize, f64)], rhs: f64, row: &mut usize| {
            a.set_rows(*row + 1);
            for &(c, v) in entries {
                a.push(*row, c, v);
            }
            b.push(rhs);
            *row += 1;
        };
        // --- zero cone: initial state, dynamics, terminal state
        let start = row;
        let y0 = [inst.x0[0], inst.x0[1], inst.x0[2], inst.x0[3], inst.x0[4], inst.x0[5], m0.ln()];
        for (i, v) in y0.iter().enumerate() {
            add(&mut a, &[(Self::idx_y(0, i), 1.0)], *v, &mut row);
        }
        for k in 0..big_n {
            for i in 0..7 {
                let mut e = vec![(Self::idx_y(k + 1, i), 1.0)];
                e.extend((0..7).map(|j| (Self::idx_y(k, j), -d.a[(i, j)])));
                e.extend((0..4).map(|j| (self.idx_w(k, j), -d.b[(i, j)])));
                add(&mut a, &e, d.c[i], &mut row);
            }
        }
        for i in 0..3 {
            add(&mut a, &[(Self::idx_y(big_n, i), 1.0)], r_t[i], &mut row);
        }
        for i in 0..3 {
            add(&mut a, &[(Self::idx_y(big_n, 3 + i), 1.0)], v_t[i], &mut row);
        }
        cones.push(SupportedConeT::ZeroConeT(row - start));
        // --- nonnegative cone
        let start = row;
        for k in 1..=big_n {
            add(&mut a, &[(Self::idx_y(k, 6), -1.0)], -z0(k), &mut row); // z_k >= z0_k
            add(&mut a, &[(Self::idx_y(k, 6), 1.0)], zmax(k), &mut row); // z_k <= zmax_k
        }
        let cos_theta = prm.pointing_max_deg.to_radians().cos();
        for k in 0..big_n {
            let e2 = rho2 * f(k) * (-z0(k)).exp();
            // sigma_k + rho2 e^{-z0} z_k <= rho2 e^{-z0} (1 + z0)
            add(&mut a, &[(self.idx_w(k, 3), 1.0), (Self::idx_y(k, 6), e2)], e2 * (1.0 + z0(k)), &mut row);
            // u_z >= cos(theta) sigma
            add(&mut a, &[(self.idx_w(k, 2), -1.0), (self.idx_w(k, 3), cos_theta)], 0.0, &mut row);
        }
        add(&mut a, &[(Self::idx_y(big_n, 6), -1.0)], -prm.m_dry.ln(), &mut row);
        let tan_gs = prm.glide_slope_deg.to_radians().tan();
        if tan_gs == 0.0 {
            for k in 1..big_n {
                add(&mut a, &[(Self::idx_y(k, 2), -1.0)], -r_t[2], &mut row);
            }
        }
        cones.push(SupportedConeT::NonnegativeConeT(row - start));
        // --- second-order cones
        for k in 0..big_n {
            // slack: |u_k| <= sigma_k
            add(&mut a, &[(self.idx_w(k, 3), -1.0)], 0.0, &mut row);
            for j in 0..3 {
                add(&mut a, &[(self.idx_w(k, j), -1.0)], 0.0, &mut row);
            }
            cones.push(SupportedConeT::SecondOrderConeT(4));
            // thrust lower bound, second order, as ||(2x, t - 1)|| <= t + 1
            let ak = rho1 * f(k) * (-z0(k)).exp();
            let zk = z0(k);
            add(&mut a, &[(self.idx_w(k, 3), -1.0), (Self::idx_y(k, 6), -ak)], 1.0 - ak - ak * zk, &mut row);
            add(&mut a, &[(self.idx_w(k, 3), -1.0), (Self::idx_y(k, 6), -ak)], -1.0 - ak - ak * zk, &mut row);
            let c = (2.0 * ak).sqrt();
            add(&mut a, &[(Self::idx_y(k, 6), -c)], -c * zk, &mut row);
            cones.push(SupportedConeT::SecondOrderConeT(3));
        }
        for k in 1..big_n {
            if tan_gs > 0.0 {
                add(&mut a, &[(Self::idx_y(k, 2), -1.0 / tan_gs)], -r_t[2] / tan_gs, &mut row);
                add(&mut a, &[(Self::idx_y(k, 0), -1.0)], -r_t[0], &mut row);
                add(&mut a, &[(Self::idx_y(k, 1), -1.0)], -r_t[1], &mut row);
                cones.push(SupportedConeT::SecondOrderConeT(3));
            }
            add(&mut a, &[], prm.v_max, &mut row);
            for j in 0..3 {
                add(&mut a, &[(Self::idx_y(k, 3 + j), -1.0)], 0.0, &mut row);
            }
            cones.push(SupportedConeT::SecondOrderConeT(4));
        }
        let mut q = vec![0.0; nv];
        for k in 0..big_n {
            q[self.idx_w(k, 3)] = dt;
        }
        Socp { a, b, q, cones }
    }

    /// Solves the SOCP for one t_f.
    fn solve_tf(&mut self, inst: &Instance, t_f: f64, deadline: Instant) -> Result<Fixed, SolveError> {
        let socp = self.build(inst, t_f);
        let a = socp.a.to_csc();
        let time_left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        if time_left <= 0.0 {
            return Err(SolveError::TimeLimit { limit_s: self.settings.time_limit_s });
        }
        let settings = clarabel_settings(&self.settings, time_left);
        let reuse = self.socp.as_ref().is_some_and(|s| s.solution.x.len() == socp.q.len() && s.solution.z.len() == socp.b.len());
        if reuse {
            let s = self.socp.as_mut().expect("checked");
            let upd = |e: clarabel::solver::DataUpdateError| SolveError::Numerical(format!("SOCP update: {e:?}"));
            s.update_A(&a.nzval).map_err(upd)?;
            s.update_b(&socp.b).map_err(upd)?;
            s.update_q(&socp.q).map_err(upd)?;
            s.update_settings(settings).map_err(|e| SolveError::Numerical(format!("{e:?}")))?;
        } else {
            let p = clarabel::algebra::CscMatrix::zeros((socp.q.len(), socp.q.len()));
            let s = DefaultSolver::new(&p, &socp.q, &a, &socp.b, &socp.cones, settings).map_err(|e| SolveError::Numerical(format!("SOCP setup: {e}")))?;
            self.socp = Some(s);
        }
        let s = self.socp.as_mut().expect("built above");
        s.solve();
        check_clarabel(s.solution.status, s.solution.iterations, self.settings.time_limit_s, &format!("LCvx SOCP at t_f = {t_f:.3} s"))?;
        let big_n = self.problem.horizon();
        let x = &s.solution.x;
        let y = DMatrix::from_fn(big_n + 1, 7, |k, i| x[Self::idx_y(k, i)]);
        let w = DMatrix::from_fn(big_n, 4, |k, j| x[7 * (big_n + 1) + 4 * k + j]);
        Ok(Fixed { y, w, iterations: s.solution.iterations })
    }

    /// Checks the instance for problems that make every t_f infeasible, naming the reason.
    fn precheck(&self, inst: &Instance) -> Result<(), SolveError> {
        let kind = self.problem.kind();
        check_len(kind, "x0", inst.x0.len(), 7)?;
        check_len(kind, "x_target", inst.x_target.len(), 7)?;
        let prm = self.problem.params();
        let infeasible = |reason: String| Err(SolveError::Infeasible { reason });
        if inst.x0.iter().any(|v| !v.is_finite()) {
            return infeasible("x0 has a NaN or infinite entry".into());
        }
        if inst.x0[6] <= prm.m_dry {
            return infeasible(format!("initial mass {} kg is not above the dry mass {} kg", inst.x0[6], prm.m_dry));
        }
        let speed = inst.x0.rows(3, 3).norm();
        if speed > prm.v_max {
            return infeasible(format!("initial speed {speed:.1} m/s exceeds v_max = {} m/s", prm.v_max));
        }
        let d = inst.x0.rows(0, 3) - inst.x_target.rows(0, 3);
        let need = prm.glide_slope_deg.to_radians().tan() * (d[0] * d[0] + d[1] * d[1]).sqrt();
        if d[2] < need {
            return infeasible(format!("initial position is below the {} deg glide slope: height {:.1} m < {:.1} m needed", prm.glide_slope_deg, d[2], need));
        }
        Ok(())
    }

    /// Solves with a given t_f (`t_f = Some`) or the minimum-fuel t_f (`None`), returning the
    /// solution and the LCvx report.
    ///
    /// # Errors
    /// [`SolveError::Infeasible`] with the reason when known (the initial state breaks a
    /// constraint, or no t_f in the bracket is feasible); other [`SolveError`]s as the cone solver reports.
    pub fn solve_detailed(&mut self, inst: &Instance) -> Result<(Solution, LcvxReport), SolveError> {
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_secs_f64(self.settings.time_limit_s);
        self.precheck(inst)?;
        let alpha = self.problem.params().alpha();
        let mut evals: Vec<(f64, Option<f64>)> = Vec::new();
        let mut iterations = 0u32;
        let mut lossy = 0u32;
        let mut failed = 0u32;
        let mut best: Option<(f64, f64, Fixed)> = None;
        let mut eval = |this: &mut Self, t_f: f64, best: &mut Option<(f64, f64, Fixed)>| -> Result<f64, SolveError> {
            match this.solve_tf(inst, t_f, deadline) {
                Ok(fx) => {
                    iterations += fx.iterations;
                    let big_n = this.problem.horizon();
                    let fuel = inst.x0[6] - fx.y[(big_n, 6)].exp();
                    let cost = (inst.x0[6].ln() - fx.y[(big_n, 6)]) / alpha;
                    evals.push((t_f, Some(fuel)));
                    if lossless_gap(&fx.w) > LOSSLESS_TOL {
                        // Not a solution of the original problem (|T| < rho1 somewhere): unusable.
                        lossy += 1;
                        return Ok(f64::INFINITY);
                    }
                    if best.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                        *best = Some((cost, t_f, fx));
                    }
                    Ok(cost)
                }
                Err(SolveError::Infeasible { .. }) => {
                    evals.push((t_f, None));
                    Ok(f64::INFINITY)
                }
                Err(e @ SolveError::TimeLimit { .. }) => Err(e),
                Err(e) => {
                    // A numerical failure at one t_f (near the edge of feasibility) must not
                    // discard the feasible solutions already found: count it as unusable.
                    log::debug!("LCvx: t_f = {t_f:.3} s unusable: {e}");
                    failed += 1;
                    evals.push((t_f, None));
                    Ok(f64::INFINITY)
                }
            }
        };
        match inst.t_go {
            Some(t_f) => {
                eval(self, t_f, &mut best)?;
            }
            None => {
                let (lo, hi) = self.tf_bracket(&inst.x0);
                if hi <= lo {
                    return Err(SolveError::Infeasible { reason: format!("empty t_f bracket [{lo:.2}, {hi:.2}] s: not enough propellant for the speed") });
                }
                let g = self.search.grid;
                let grid: Vec<f64> = (0..g).map(|i| lo + (hi - lo) * (i as f64 + 0.5) / g as f64).collect();
                let mut costs = Vec::with_capacity(g);
                for &t in &grid {
                    costs.push(eval(self, t, &mut best)?);
                }
                let (ib, cb) = costs.iter().enumerate().fold((0, f64::INFINITY), |acc, (i, &c)| if c < acc.1 { (i, c) } else { acc });
                if cb.is_finite() {
                    // golden-section search on the bracket around the best grid point
                    let (mut a, mut b) = (if ib == 0 { lo } else { grid[ib - 1] }, if ib + 1 == g { hi } else { grid[ib + 1] });
                    let phi = (5f64.sqrt() - 1.0) / 2.0;
                    let mut c = b - phi * (b - a);
                    let mut d = a + phi * (b - a);
                    let mut fc = eval(self, c, &mut best)?;
                    let mut fd = eval(self, d, &mut best)?;
                    while b - a > self.search.tol_s {
                        if fc <= fd {
                            b = d;
                            d = c;
                            fd = fc;
                            c = b - phi * (b - a);
                            fc = eval(self, c, &mut best)?;
                        } else {
                            a = c;
                            c = d;
                            fc = fd;
                            d = a + phi * (b - a);
                            fd = eval(self, d, &mut best)?;
                        }
                    }
                }
            }
        }
        let subproblems = evals.len() as u32;
        evals.sort_by(|x, y| x.0.total_cmp(&y.0));
        let Some((_, t_f, fx)) = best else {
            let (lo, hi) = self.tf_bracket(&inst.x0);
            let mut reason = match inst.t_go {
                Some(t) => format!("no feasible trajectory with t_f = {t:.2} s"),
                None => format!("no feasible trajectory for any t_f tried in [{lo:.1}, {hi:.1}] s (N = {})", self.problem.horizon()),
            };
            if failed > 0 {
                reason.push_str(&format!("; {failed} cone solve(s) failed numerically"));
            }
            if lossy > 0 {
                reason.push_str(&format!(
                    "; {lossy} relaxed solution(s) were not lossless (|u| < sigma by more than {LOSSLESS_TOL:e}), so not feasible for the thrust lower bound"
                ));
            }
            return Err(SolveError::Infeasible { reason });
        };
        let (solution, mut report) = self.finish(inst, &fx, t_f, iterations, subproblems, start, evals)?;
        report.lossy_evaluations = lossy;
        Ok((solution, report))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        inst: &Instance,
        fx: &Fixed,
        t_f: f64,
        iterations: u32,
        subproblems: u32,
        start: Instant,
        evals: Vec<(f64, Option<f64>)>,
    ) -> Result<(Solution, LcvxReport), SolveError> {
        let big_n = self.problem.horizon();
        let dt = t_f / big_n as f64;
        let lossless_gap = lossless_gap(&fx.w);
        let u = DMatrix::from_fn(big_n, 3, |k, j| fx.w[(k, j)] * fx.y[(k, 6)].exp());
        let x_model = DMatrix::from_fn(big_n + 1, 7, |k, i| if i == 6 { fx.y[(k, 6)].exp() } else { fx.y[(k, i)] });
        let x = self.problem.rollout(&inst.x0, &u, dt)?;
        let last = x.row(big_n);
        let pos = (last.columns(0, 3).transpose() - inst.x_target.rows(0, 3)).norm();
        let vel = (last.columns(3, 3).transpose() - inst.x_target.rows(3, 3)).norm();
        let cost = self.problem.cost(&x, &u, &inst.x_target, dt);
        Ok((
            Solution { u, x, x_model, cost, t_go: t_f, dt, iterations, subproblems, solve_time: start.elapsed() },
            LcvxReport { lossless_gap, resim_position_error: pos, resim_velocity_error: vel, fuel_vs_tf: evals, lossy_evaluations: 0 },
        ))
    }
}

/// Relative tolerance on `sigma - |u|` for a relaxed solution to count as lossless.
pub const LOSSLESS_TOL: f64 = 1e-4;

/// `max_k (sigma_k - |u_k|) / sigma_k` of controls `w` `[N, 4]` = (u, sigma).
fn lossless_gap(w: &DMatrix<f64>) -> f64 {
    (0..w.nrows()).map(|k| (w[(k, 3)] - w.view((k, 0), (1, 3)).norm()) / w[(k, 3)].max(1e-12)).fold(0.0, f64::max)
}

impl OcpSolver for LcvxSolver {
    fn solve(&mut self, instance: &Instance) -> Result<Solution, SolveError> {
        self.solve_detailed(instance).map(|(s, _)| s)
    }
}
