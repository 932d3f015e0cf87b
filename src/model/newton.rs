//! The terminal-constraint Gauss-Newton step of TRC's sensitivity features, per sample in f64
//! (docs/method.md "Sensitivity features"; [`super::Newton`]).
//!
//! The same step as the batched tensor form in [`super::Trc`] (which runs on a GPU): with
//! `G = d e / d u_n` `[c, N m]` (`e` the terminal error on the problem's terminal components,
//! each divided by its tolerance; `u_n` the normalised controls), the active set of control
//! bounds grown over four passes, `G_a` = `G` without the held bounds' directions, and
//! `g = -G_a^T (G_a G_a^T + mu I)^-1 e`. On the CPU this is one small dense problem per sample
//! (c = 6 rows): a few tens of microseconds, against a few milliseconds for the hundreds of small
//! tensor kernels of the batched form at batch 1 (the receding-horizon controller's case).

use nalgebra::{DMatrix, DVector, Vector3};

use crate::problems::{terminal_sensitivity, ControlConstraint, Simulator};

/// Relative width of "at a bound" for the active set (of the bound's value or the box span).
const AT_BOUND_REL: f64 = 1e-4;
/// Width of "on the pointing cone" [rad].
const AT_CONE: f64 = 1e-4;
/// Passes of the active-set loop (the held set grows in all but the last).
const PASSES: usize = 4;

/// One sample's Gauss-Newton step and the quantities its null-space projector needs.
#[derive(Debug, Clone)]
pub struct GaussNewton {
    /// The step `g` `[N m]` in normalised control units, row-major (`k m + j` = `u[k, j]`),
    /// before any trust radius.
    pub g: DVector<f64>,
    /// `G_a` `[c, N m]`: the Jacobian in normalised units restricted to the tangent of the held bounds.
    pub jac: DMatrix<f64>,
    /// `A = G_a G_a^T + mu I` `[c, c]`.
    pub a: DMatrix<f64>,
}

/// What the step needs besides the sample: the in-loop simulator, the control constraint, the
/// terminal components `idx` and their scales `scale` (each tolerance), and the control std per
/// component `sigma` (length m, the normaliser's).
#[derive(Debug, Clone, Copy)]
pub struct GnSetup<'a> {
    /// In-loop simulator (the demonstrations' discrete model).
    pub sim: &'a Simulator,
    /// Control constraint of the problem.
    pub constraint: &'a ControlConstraint,
    /// Terminal state components aimed at.
    pub idx: &'a [usize],
    /// Their scales (the error is measured in these units).
    pub scale: &'a [f64],
    /// Control std per component (normalised = (u - mean) / sigma).
    pub sigma: &'a [f64],
}

/// The active-set Gauss-Newton step at `u` `[N, m]` (physical) from `x0` `[n]` toward `xt` `[n]`
/// with step `dt` [s]. `None` if the rollout fails (wrong dimensions) or the system is singular.
pub fn gauss_newton_step(s: &GnSetup<'_>, x0: &DVector<f64>, xt: &DVector<f64>, u: &DMatrix<f64>, dt: f64) -> Option<GaussNewton> {
    let (steps, m) = (u.nrows(), u.ncols());
    let c = s.idx.len();
    let (traj, jac_phys) = terminal_sensitivity(s.sim, x0, u, dt, s.idx).ok()?;
    let e = DVector::from_iterator(c, s.idx.iter().zip(s.scale).map(|(&i, sc)| (traj[(steps, i)] - xt[i]) / sc));
    let mut jac = jac_phys;
    for r in 0..c {
        for col in 0..steps * m {
            jac[(r, col)] *= s.sigma[col % m] / s.scale[r];
        }
    }
    let mut held = vec![false; steps * held_width(s.constraint, m)];
    let mut last = None;
    for pass in 0..PASSES {
        let jt = tangent(s, &jac, u, &held);
        let mut a = &jt * jt.transpose();
        let mu = a.diagonal().mean() * 1e-6 + 1e-12;
        for i in 0..c {
            a[(i, i)] += mu;
        }
        let y = a.clone().lu().solve(&e)?;
        let g = -(jt.transpose() * y);
        if pass + 1 < PASSES {
            let probe = DMatrix::from_fn(steps, m, |k, j| u[(k, j)] + g[k * m + j] * s.sigma[j]);
            grow_held(s.constraint, &mut held, u, &probe);
        }
        last = Some(GaussNewton { g, jac: jt, a });
    }
    last
}

/// Flags per step of the held set: thrust radial and cone (2), or one per box component (m).
fn held_width(constraint: &ControlConstraint, m: usize) -> usize {
    match constraint {
        ControlConstraint::Box { .. } => m,
        ControlConstraint::ThrustAnnulusCone { .. } => 2,
    }
}

fn unit(v: Vector3<f64>) -> Vector3<f64> {
    v / v.norm().max(1e-12)
}

fn tilt(t: &Vector3<f64>) -> f64 {
    (t.z / t.norm().max(1e-12)).clamp(-1.0, 1.0).acos()
}

/// `G` without the directions of the held bounds at `u`: a held thrust magnitude loses its
/// radial direction, a held pointing cone the direction of growing tilt (made orthogonal to the
/// radial one), a held box component its column (the tensor form: [`super::active_set::HeldBounds::tangent`]).
fn tangent(s: &GnSetup<'_>, jac: &DMatrix<f64>, u: &DMatrix<f64>, held: &[bool]) -> DMatrix<f64> {
    let mut g = jac.clone();
    let m = u.ncols();
    match s.constraint {
        ControlConstraint::Box { .. } => {
            for (col, _) in held.iter().enumerate().filter(|(_, h)| **h) {
                g.column_mut(col).fill(0.0);
            }
        }
        ControlConstraint::ThrustAnnulusCone { .. } => {
            let sigma = Vector3::new(s.sigma[0], s.sigma[1], s.sigma[2]);
            for k in 0..u.nrows() {
                let (radial, cone) = (held[2 * k], held[2 * k + 1]);
                if !radial && !cone {
                    continue;
                }
                let t = Vector3::new(u[(k, 0)], u[(k, 1)], u[(k, 2)]);
                let dir = t / t.norm().max(1e-12);
                let hn = (dir.x * dir.x + dir.y * dir.y).sqrt();
                let (ax, ay) = (dir.x / hn.max(1e-12), dir.y / hn.max(1e-12));
                let n_cone = Vector3::new(ax * dir.z, ay * dir.z, -hn);
                let d1 = if radial { unit(dir.component_mul(&sigma)) } else { Vector3::zeros() };
                let d2 = n_cone.component_mul(&sigma);
                let d2 = if cone { unit(d2 - d1 * d2.dot(&d1)) } else { Vector3::zeros() };
                for d in [d1, d2] {
                    for r in 0..g.nrows() {
                        let gd: f64 = (0..m).map(|j| g[(r, k * m + j)] * d[j]).sum();
                        for j in 0..m {
                            g[(r, k * m + j)] -= gd * d[j];
                        }
                    }
                }
            }
        }
    }
    g
}

/// Adds to `held` the bounds a step from `u` to `probe` (both `[N, m]`, physical) pushes against
/// or crosses (the tensor form: [`super::active_set::HeldBounds::grow`]).
fn grow_held(constraint: &ControlConstraint, held: &mut [bool], u: &DMatrix<f64>, probe: &DMatrix<f64>) {
    let m = u.ncols();
    match constraint {
        ControlConstraint::Box { lower, upper } => {
            for k in 0..u.nrows() {
                for j in 0..m {
                    let (lo, hi, x, p) = (lower[j], upper[j], u[(k, j)], probe[(k, j)]);
                    let span = (hi - lo).abs().max(1e-12) * AT_BOUND_REL;
                    let out_hi = (x >= hi - span && p > x) || p > hi;
                    let out_lo = (x <= lo + span && p < x) || p < lo;
                    held[k * m + j] |= out_hi || out_lo;
                }
            }
        }
        ControlConstraint::ThrustAnnulusCone { rho_min, rho_max, max_tilt } => {
            for k in 0..u.nrows() {
                let t = Vector3::new(u[(k, 0)], u[(k, 1)], u[(k, 2)]);
                let q = Vector3::new(probe[(k, 0)], probe[(k, 1)], probe[(k, 2)]);
                let (nu, np) = (t.norm(), q.norm());
                let radial =
                    (nu >= rho_max * (1.0 - AT_BOUND_REL) && np > nu) || (nu <= rho_min * (1.0 + AT_BOUND_REL) && np < nu) || np > *rho_max || np < *rho_min;
                let (tu, tp) = (tilt(&t), tilt(&q));
                let cone = (tu >= max_tilt - AT_CONE && tp > tu) || tp > *max_tilt;
                held[2 * k] |= radial;
                held[2 * k + 1] |= cone;
            }
        }
    }
}
