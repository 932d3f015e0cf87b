//! Classical feedback baselines (`trc baseline`): feedback laws flying the f64 plant (RK4) of
//! each problem, with every constraint checked; a yardstick next to the TRC closed loop.
//!
//! - Powered descent: ZEM/ZEV optimal feedback guidance (Ebrahimi, Bahrami & Roshanian 2008;
//!   Guo, Hawkins & Wie 2013, eq. 9): `a = 6 ZEM / t_go^2 - 2 ZEV / t_go`, with
//!   `ZEM = r_f - (r + v t_go + g t_go^2 / 2)` and `ZEV = v_f - (v + g t_go)`, the thrust `T = m a`
//!   then projected onto the thrust annulus and pointing cone. It ignores the constraints while
//!   planning, so it is a baseline, not the optimum.
//! - Van der Pol and the double integrator: a saturated PD law on the target error (with the
//!   Van der Pol nonlinearity cancelled where the bound allows).

use nalgebra::{DMatrix, DVector};

use crate::problems::{ControlConstraint, PoweredDescent, Problem};

/// Result of one closed-loop episode.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Trajectory `[K+1, n]` at the control rate.
    pub x: DMatrix<f64>,
    /// Applied controls `[K, m]`.
    pub u: DMatrix<f64>,
    /// Control period dt [s].
    pub dt: f64,
    /// Problem cost J of the flown trajectory.
    pub cost: f64,
    /// Success criterion met at the end.
    pub success: bool,
    /// Number of constraint violations along the way.
    pub violations: usize,
}

/// Flies one descent episode from `x0` to `target` with ZEM/ZEV guidance at period `dt` [s] and
/// final time `t_f` [s]; the plant is the problem's RK4 with the thrust held over each period.
/// Guidance freezes the last command for the final `2 dt` (t_go -> 0 is singular), and the
/// episode ends at touchdown (altitude reaches the target's) or at `t_f`.
pub fn fly_descent(p: &PoweredDescent, x0: &DVector<f64>, target: &DVector<f64>, t_f: f64, dt: f64) -> Episode {
    let prm = p.params();
    let g = DVector::from_vec(prm.gravity.to_vec());
    let (rho1, rho2, tilt) = (prm.rho1(), prm.rho2(), prm.pointing_max_deg.to_radians());
    let steps = (t_f / dt).round() as usize;
    let mut xs = vec![x0.clone()];
    let mut us: Vec<DVector<f64>> = Vec::new();
    let mut x = x0.clone();
    let mut last = DVector::from_vec(vec![0.0, 0.0, rho1]);
    for k in 0..steps {
        let t_go = t_f - k as f64 * dt;
        let thrust = if t_go > 2.0 * dt { zem_zev_thrust(&x, target, &g, t_go, rho1, rho2, tilt) } else { last.clone() };
        last = thrust.clone();
        let next = p.step(&x, &thrust, dt);
        us.push(thrust);
        x = next;
        xs.push(x.clone());
        if x[2] <= target[2] {
            break;
        }
    }
    finish(p, xs, us, dt, target)
}

/// The ZEM/ZEV acceleration command (see the module docs) at state `x` with time-to-go `t_go`
/// [s] towards `target` (length 7; its position and velocity), as a thrust [N] projected onto the
/// annulus `[rho1, rho2]` and the pointing cone `tilt` [rad].
fn zem_zev_thrust(x: &DVector<f64>, target: &DVector<f64>, g: &DVector<f64>, t_go: f64, rho1: f64, rho2: f64, tilt: f64) -> DVector<f64> {
    let r = x.rows(0, 3).into_owned();
    let v = x.rows(3, 3).into_owned();
    let zem = target.rows(0, 3) - (&r + &v * t_go + g * (0.5 * t_go * t_go));
    let zev = target.rows(3, 3) - (&v + g * t_go);
    let a = zem * (6.0 / (t_go * t_go)) - zev * (2.0 / t_go);
    PoweredDescent::project_thrust(&(a * x[6]), rho1, rho2, tilt)
}

/// A ZEM/ZEV plan: the controls `[n, 3]` [N] the law commands at each of `n` nodes of step
/// `t_go / n` along its own RK4 rollout from `x0` towards `target` (the last two nodes hold the
/// previous command: t_go -> 0 is singular). Microseconds to compute: the descent mission's
/// first plan of a goal when the policy has none in time, and the ZEM/ZEV policy of the
/// closed-loop benchmark.
pub fn zem_zev_plan(p: &PoweredDescent, x0: &DVector<f64>, target: &DVector<f64>, t_go: f64, n: usize) -> DMatrix<f64> {
    let prm = p.params();
    let g = DVector::from_vec(prm.gravity.to_vec());
    let (rho1, rho2, tilt) = (prm.rho1(), prm.rho2(), prm.pointing_max_deg.to_radians());
    let dt = t_go / n.max(1) as f64;
    let mut u = DMatrix::zeros(n, 3);
    let mut x = x0.clone();
    let mut last = DVector::from_vec(vec![0.0, 0.0, rho1]);
    for k in 0..n {
        let tg = t_go - k as f64 * dt;
        let thrust = if tg > 2.0 * dt || k == 0 { zem_zev_thrust(&x, target, &g, tg, rho1, rho2, tilt) } else { last.clone() };
        u.row_mut(k).copy_from(&thrust.transpose());
        x = p.step(&x, &thrust, dt);
        last = thrust;
    }
    u
}

/// Flies a 1-D problem (Van der Pol, double integrator) for its horizon with a saturated PD law.
pub fn fly_pd(p: &dyn Problem, x0: &DVector<f64>, target: &DVector<f64>, dt: f64, vdp_mu: Option<f64>) -> Episode {
    let (lo, hi) = match p.control_constraint() {
        ControlConstraint::Box { lower, upper } => (lower[0], upper[0]),
        ControlConstraint::ThrustAnnulusCone { .. } => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let (kp, kd) = (4.0, 3.0);
    let mut xs = vec![x0.clone()];
    let mut us = Vec::new();
    let mut x = x0.clone();
    for _ in 0..p.horizon() {
        let e = &x - target;
        let cancel = vdp_mu.map_or(0.0, |mu| -mu * (1.0 - x[0] * x[0]) * x[1] + x[0]);
        let u = DVector::from_element(1, (cancel - kp * e[0] - kd * e[1]).clamp(lo, hi));
        x = p.step(&x, &u, dt);
        us.push(u);
        xs.push(x.clone());
    }
    finish(p, xs, us, dt, target)
}

fn finish(p: &dyn Problem, xs: Vec<DVector<f64>>, us: Vec<DVector<f64>>, dt: f64, target: &DVector<f64>) -> Episode {
    let n = p.state_dim();
    let m = p.control_dim();
    let x = DMatrix::from_fn(xs.len(), n, |k, j| xs[k][j]);
    let u = DMatrix::from_fn(us.len(), m, |k, j| us[k][j]);
    let cost = p.cost(&x, &u, target, dt);
    let last = xs.last().cloned().unwrap_or_else(|| DVector::zeros(n));
    let success = p.is_success(&last, target);
    let violations = p.check_constraints(&x, &u, target).len();
    Episode { x, u, dt, cost, success, violations }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::DescentParams;

    #[test]
    fn projection_is_feasible_and_identity_on_feasible_input() {
        let (r1, r2, th) = (4971.8, 13258.2, 45f64.to_radians());
        let ok = DVector::from_vec(vec![1000.0, -500.0, 8000.0]);
        assert_eq!(PoweredDescent::project_thrust(&ok, r1, r2, th), ok);
        for t in [[0.0, 0.0, 0.0], [1e5, 0.0, 1.0], [0.0, 0.0, -9000.0], [3000.0, 3000.0, 100.0], [10.0, 0.0, 20.0]] {
            let p = PoweredDescent::project_thrust(&DVector::from_vec(t.to_vec()), r1, r2, th);
            let n = p.norm();
            assert!(n >= r1 - 1e-6 && n <= r2 + 1e-6, "{t:?} -> |T| = {n}");
            assert!(PoweredDescent::tilt(p.as_slice()) <= th + 1e-9, "{t:?} -> tilt");
        }
    }

    #[test]
    fn zem_zev_lands_the_default_vehicle() {
        let p = PoweredDescent::new(DescentParams::default()).unwrap();
        let x0 = DVector::from_vec(vec![400.0, -200.0, 1500.0, -10.0, 5.0, -50.0, 1905.0]);
        let ep = fly_descent(&p, &x0, &p.default_target(), 45.0, 0.1);
        let last = ep.x.row(ep.x.nrows() - 1);
        assert!(last[2].abs() < 5.0 && last[6] > 1505.0, "ended at {last}");
    }
}

/// One baseline episode: its initial state, the final time flown [s] and the result.
#[derive(Debug, Clone)]
pub struct BaselineRun {
    /// Initial state x0.
    pub x0: DVector<f64>,
    /// Target state.
    pub x_target: DVector<f64>,
    /// Final time [s] (descent: the best of a sweep 20..100 s; others: N dt).
    pub t_f: f64,
    /// The flown episode.
    pub episode: Episode,
}

/// Flies the baseline law of `problem` from each `(x0, x_target)` of `starts` (`trc baseline`
/// passes the test split of a seed, [`crate::data::sample_instance`]: the distribution TRC is
/// trained and judged on); control period 0.1 s for descent, the problem's dt otherwise.
/// Descent: ZEM/ZEV has no t_f of its own, so t_f is swept over 20, 25, ..., 100 s and the
/// cheapest landing kept.
///
/// # Errors
/// [`crate::error::ConfigError`] for an invalid problem config.
pub fn run(
    problem: &crate::problems::ProblemConfig,
    starts: impl IntoIterator<Item = (DVector<f64>, DVector<f64>)>,
) -> Result<Vec<BaselineRun>, crate::error::ConfigError> {
    use crate::problems::ProblemKind;
    let mut out = Vec::new();
    for (x0, x_target) in starts {
        let run = match problem.name {
            ProblemKind::Descent => {
                let p = PoweredDescent::new(problem.descent.clone())?;
                let rank = |e: &Episode| {
                    if e.success && e.violations == 0 {
                        e.cost * p.params().alpha()
                    } else {
                        1e6 + e.x.row(e.x.nrows() - 1).columns(0, 6).norm()
                    }
                };
                let (t_f, episode) = (4..=20)
                    .map(|k| k as f64 * 5.0)
                    .map(|t_f| (t_f, fly_descent(&p, &x0, &x_target, t_f, 0.1)))
                    .min_by(|a, b| rank(&a.1).total_cmp(&rank(&b.1)))
                    .expect("a non-empty sweep");
                BaselineRun { x0, x_target, t_f, episode }
            }
            ProblemKind::Vanderpol | ProblemKind::DoubleIntegrator => {
                let p = problem.build()?;
                let mu = (problem.name == ProblemKind::Vanderpol).then_some(problem.vanderpol.mu);
                let episode = fly_pd(p.as_ref(), &x0, &x_target, p.dt_for(p.default_t_go()), mu);
                BaselineRun { x0, x_target, t_f: p.default_t_go(), episode }
            }
        };
        out.push(run);
    }
    Ok(out)
}
