//! The plant simulator core (ROS-free; `trc_sim` is the r2r layer over it): true dynamics by
//! RK4 at a high internal rate, zero-order hold on the latest command, disturbances, touchdown
//! detection.
//!
//! Disturbances (all zero by default), drawn once per episode from the episode's seed:
//! - thrust magnitude error: applied thrust `(1 + e) T`, `e ~ U(-a, a)` (`thrust_scale_error` = a);
//! - thrust direction error: `T` rotated by `U(0, b)` about a random horizontal axis
//!   (`thrust_dir_error_deg` = b);
//! - mass error: the published mass is the true mass times `(1 + c)`, `c ~ U(-c_max, c_max)`
//!   (`mass_error` = c_max; an estimator bias);
//! - state-estimate noise: Gaussian, `pos_noise_m` / `vel_noise_mps` per axis and sample;
//! - latency: a command takes effect `latency_s` after it was received;
//! - unmodelled acceleration: a constant `accel_bias_mps2` in a uniformly random direction;
//! - thrust loss: the applied thrust scaled by `1 - thrust_loss` for `thrust_loss_s` from a time
//!   drawn uniformly in `fault_window_s`;
//! - controller outage: for `outage_s` from a time drawn uniformly in `fault_window_s`,
//!   [`Plant::link_up`] is false (no state reaches the controller); the vehicle flies the last
//!   control sequence it received open loop (`outage_flies_plan`, the default: the actuation
//!   layer of an MPC deployment buffers the plan), or holds the last command.
//!
//! The catalogue of the benchmarks (`mild`, `harsh`, `outage`) is [`crate::config::Disturbances`].
//!
//! Descent episodes end at touchdown (the altitude crosses the landing site's; the crossing is
//! interpolated between internal steps) or at `max_time_s`. A descent episode succeeds when it
//! touches down within `success_position_tol` / `success_speed_tol` of the site **and** held its
//! constraints on the way: the true position never more than [`GLIDE_SLOPE_TOL_FACTOR`]
//! `tan(gamma_gs) success_position_tol` below the glide-slope cone (0.27 m by default: the
//! depth of the cone 1 m from its apex, so a landing inside the position tolerance is not
//! failed by the cone's own apex), and every command received within the thrust annulus
//! `[rho1, rho2]` and the pointing cone (relative tolerance 1e-6; the acceptance,
//! docs/robustness.md). The other problems run for
//! `max_time_s` and are judged by the problem's success criterion at the end.

use std::collections::VecDeque;

use nalgebra::{DVector, Rotation3, Unit, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::config::{ProblemConfig, ProblemKind, SimConfig};
use crate::error::ConfigError;
use crate::problems::Problem;

/// Result of an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeResult {
    /// Episode index.
    pub episode: u64,
    /// Time of touchdown or the end [s, since the episode start].
    pub t: f64,
    /// Descent: touched down (altitude crossing) before the time limit.
    pub touched_down: bool,
    /// Descent: horizontal distance to the landing site at touchdown [m]; others: |x_final - x_target|.
    pub position_error: f64,
    /// Descent: speed at touchdown [m/s]; others: 0.
    pub speed: f64,
    /// Descent: propellant used [kg]; others: 0.
    pub fuel_kg: f64,
    /// Meets the problem's success criterion (descent: < 1 m, < 0.5 m/s at touchdown, the
    /// glide slope held and every command admissible; see the module docs).
    pub success: bool,
    /// Descent: the deepest the true position went below the glide-slope cone [m] (0 when it
    /// never did); others: 0.
    #[serde(default)]
    pub glide_slope_violation_m: f64,
    /// Descent: the largest thrust-bound excess of a received command, relative to the bound
    /// (`|T| / rho2 - 1` or `1 - |T| / rho1`; 0 when none); others: 0.
    #[serde(default)]
    pub thrust_violation: f64,
    /// Descent: the largest pointing excess of a received command [deg] (0 when none).
    #[serde(default)]
    pub pointing_violation_deg: f64,
}

/// A descent episode fails when its true position goes deeper than this times
/// `tan(gamma_gs) success_position_tol` below the glide-slope cone (see the module docs).
pub const GLIDE_SLOPE_TOL_FACTOR: f64 = 1.0;

/// Relative tolerance of the command admissibility check (thrust annulus, pointing cone).
const CONTROL_TOL: f64 = 1e-6;

/// What a descent episode has violated so far (see [`EpisodeResult`]).
#[derive(Debug, Clone, Copy, Default)]
struct Violations {
    glide_slope_m: f64,
    thrust: f64,
    pointing_deg: f64,
}

/// A source of states for a closed loop and a sink for its commands: the project's simulator
/// ([`SimPlant`], behind `trc_sim` and the lockstep loop), and later a foreign simulator, a bag
/// being replayed or a robot. Times are seconds since the episode start; states and commands
/// are in problem units (length n and m).
pub trait Plant {
    /// Time since the episode start [s].
    fn time(&self) -> f64;
    /// The true state, length n (for trajectories and reports; a robot reports its best estimate).
    fn true_state(&self) -> &DVector<f64>;
    /// The state estimate handed to the controller now, length n.
    fn measured_state(&mut self) -> DVector<f64>;
    /// Receives a command (length m); `false` when it is refused (wrong length, NaN) and the
    /// previous command stays.
    fn command(&mut self, u: &DVector<f64>) -> bool;
    /// Advances by `dt` [s]; the result once the episode has ended.
    fn advance(&mut self, dt: f64) -> Option<&EpisodeResult>;
    /// The episode's result once it has ended.
    fn result(&self) -> Option<&EpisodeResult>;
    /// Whether states reach the controller now (false during a simulated controller outage;
    /// the loop then skips the controller and the plant holds its last command).
    fn link_up(&self) -> bool {
        true
    }
    /// Receives the control sequence `u` `[N, m]` (step `dt` [s]) that answered the state at
    /// plant time `t0` [s]: what the vehicle's actuation layer flies open loop when commands
    /// stop (see [`SimPlant`]'s outage). Default: ignored.
    fn sequence(&mut self, _t0: f64, _dt: f64, _u: &nalgebra::DMatrix<f64>) {}
}

/// The simulated vehicle: true dynamics by RK4, disturbances, touchdown (see the module docs).
#[derive(Debug)]
pub struct SimPlant {
    problem: Box<dyn Problem>,
    kind: ProblemKind,
    cfg: SimConfig,
    x: DVector<f64>,
    x_target: DVector<f64>,
    t: f64,
    u: DVector<f64>,
    pending: VecDeque<(f64, DVector<f64>)>,
    thrust_scale: f64,
    thrust_rot: Rotation3<f64>,
    mass_bias: f64,
    accel_bias: Vector3<f64>,
    thrust_loss_at: f64,
    outage_at: f64,
    /// The last control sequence received: `(t0, dt, u)` (see [`Plant::sequence`]).
    plan: Option<(f64, f64, nalgebra::DMatrix<f64>)>,
    rng: ChaCha8Rng,
    m0: f64,
    episode: u64,
    result: Option<EpisodeResult>,
    success_tol: (f64, f64),
    m_dry: f64,
    /// Descent bounds: `(tan(gamma_gs), rho1 [N], rho2 [N], max tilt [rad])`.
    bounds: (f64, f64, f64, f64),
    violations: Violations,
}

impl SimPlant {
    /// A plant at `x0` (true state) with target `x_target`; disturbances drawn from `seed`.
    /// The initial command is the problem's neutral control (descent: hover thrust clamped to
    /// the annulus; others: 0).
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem or sim config, or a wrong-length state.
    pub fn new(problem: &ProblemConfig, cfg: &SimConfig, x0: DVector<f64>, x_target: DVector<f64>, episode: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let p = problem.build()?;
        if x0.len() != p.state_dim() || x_target.len() != p.state_dim() {
            return Err(ConfigError::invalid("plant state", format!("x0 / x_target must have {} entries", p.state_dim())));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(episode + (1 << 41));
        let thrust_scale = 1.0 + cfg.thrust_scale_error * rng.gen_range(-1.0..=1.0);
        let az: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
        let angle = cfg.thrust_dir_error_deg.to_radians() * rng.gen_range(0.0..=1.0);
        let thrust_rot = Rotation3::from_axis_angle(&Unit::new_normalize(Vector3::new(az.cos(), az.sin(), 0.0)), angle);
        let mass_bias = 1.0 + cfg.mass_error * rng.gen_range(-1.0..=1.0);
        // drawn after the older disturbances, so their draws per seed are unchanged
        let accel_bias = {
            let v = Vector3::new(
                Normal::new(0.0, 1.0).expect("unit").sample(&mut rng),
                Normal::new(0.0, 1.0).expect("unit").sample(&mut rng),
                Normal::new(0.0, 1.0).expect("unit").sample(&mut rng),
            );
            if v.norm() > 1e-12 {
                v.normalize() * cfg.accel_bias_mps2
            } else {
                Vector3::zeros()
            }
        };
        let [w0, w1] = cfg.fault_window_s;
        let thrust_loss_at = w0 + (w1 - w0) * rng.gen_range(0.0..=1.0);
        let outage_at = w0 + (w1 - w0) * rng.gen_range(0.0..=1.0);
        let kind = problem.name;
        let u = match kind {
            ProblemKind::Descent => {
                let d = &problem.descent;
                let g = Vector3::from_column_slice(&d.gravity).norm();
                DVector::from_vec(vec![0.0, 0.0, (x0[6] * g).clamp(d.rho1(), d.rho2())])
            }
            _ => DVector::zeros(p.control_dim()),
        };
        let success_tol = (problem.descent.success_position_tol, problem.descent.success_speed_tol);
        Ok(Self {
            m0: x0[x0.len() - 1],
            problem: p,
            kind,
            cfg: cfg.clone(),
            x: x0,
            x_target,
            t: 0.0,
            u,
            pending: VecDeque::new(),
            thrust_scale,
            thrust_rot,
            mass_bias,
            accel_bias,
            thrust_loss_at,
            outage_at,
            plan: None,
            rng,
            episode,
            result: None,
            success_tol,
            m_dry: problem.descent.m_dry,
            bounds: (
                problem.descent.glide_slope_deg.to_radians().tan(),
                problem.descent.rho1(),
                problem.descent.rho2(),
                problem.descent.pointing_max_deg.to_radians(),
            ),
            violations: Violations::default(),
        })
    }
    fn applied_control(&self) -> DVector<f64> {
        match self.kind {
            // out of propellant: no thrust (the mass stays at the dry mass)
            ProblemKind::Descent if self.x[6] <= self.m_dry => DVector::zeros(3),
            ProblemKind::Descent => {
                // during an outage the actuation layer flies the last sequence received (when
                // sim.outage_flies_plan), else it holds the last command
                let u = match (&self.plan, self.cfg.outage_flies_plan && !self.link_up()) {
                    (Some((t0, dt, plan)), true) if plan.ncols() == 3 && plan.nrows() > 0 => {
                        let k = (((self.t - t0) / dt).floor().max(0.0) as usize).min(plan.nrows() - 1);
                        DVector::from_iterator(3, plan.row(k).iter().copied())
                    }
                    _ => self.u.clone(),
                };
                let loss = if self.cfg.thrust_loss > 0.0 && (self.thrust_loss_at..self.thrust_loss_at + self.cfg.thrust_loss_s).contains(&self.t) {
                    1.0 - self.cfg.thrust_loss
                } else {
                    1.0
                };
                let t = self.thrust_rot * Vector3::new(u[0], u[1], u[2]) * self.thrust_scale * loss;
                DVector::from_vec(vec![t.x, t.y, t.z])
            }
            _ => self.u.clone(),
        }
    }

    /// Start [s] and duration [s] of the simulated controller outage (duration 0: none).
    pub fn outage(&self) -> (f64, f64) {
        (self.outage_at, self.cfg.outage_s)
    }

    /// The episode's drawn physical disturbances: delivered / commanded thrust magnitude (the
    /// thrust magnitude error) and the unmodelled constant acceleration [m/s^2].
    pub fn physical_disturbances(&self) -> (f64, [f64; 3]) {
        (self.thrust_scale, [self.accel_bias.x, self.accel_bias.y, self.accel_bias.z])
    }

    /// Start [s] and duration [s] of the thrust loss (duration 0 when there is none).
    pub fn thrust_loss(&self) -> (f64, f64) {
        (self.thrust_loss_at, if self.cfg.thrust_loss > 0.0 { self.cfg.thrust_loss_s } else { 0.0 })
    }
    fn finish(&mut self, x: DVector<f64>, t: f64, touched: bool) {
        let r = match self.kind {
            ProblemKind::Descent => {
                let pos = ((x[0] - self.x_target[0]).powi(2) + (x[1] - self.x_target[1]).powi(2)).sqrt();
                let speed = x.rows(3, 3).norm();
                let v = self.violations;
                let held = v.glide_slope_m <= GLIDE_SLOPE_TOL_FACTOR * self.bounds.0 * self.success_tol.0
                    && v.thrust <= CONTROL_TOL
                    && v.pointing_deg <= CONTROL_TOL * self.bounds.3.to_degrees();
                let success = touched && pos < self.success_tol.0 && speed < self.success_tol.1 && held;
                EpisodeResult {
                    episode: self.episode,
                    t,
                    touched_down: touched,
                    position_error: pos,
                    speed,
                    fuel_kg: self.m0 - x[6],
                    success,
                    glide_slope_violation_m: v.glide_slope_m,
                    thrust_violation: v.thrust,
                    pointing_violation_deg: v.pointing_deg,
                }
            }
            _ => EpisodeResult {
                episode: self.episode,
                t,
                touched_down: false,
                position_error: (&x - &self.x_target).norm(),
                speed: 0.0,
                fuel_kg: 0.0,
                success: self.problem.is_success(&x, &self.x_target),
                glide_slope_violation_m: 0.0,
                thrust_violation: 0.0,
                pointing_violation_deg: 0.0,
            },
        };
        self.x = x;
        self.t = t;
        self.result = Some(r);
    }
}

impl Plant for SimPlant {
    /// Time since the episode start [s].
    fn time(&self) -> f64 {
        self.t
    }

    /// The true state.
    fn true_state(&self) -> &DVector<f64> {
        &self.x
    }

    /// The episode's result once it has ended.
    fn result(&self) -> Option<&EpisodeResult> {
        self.result.as_ref()
    }

    /// Keeps the sequence for an outage (a finite `[N, 3]` sequence with `dt > 0`; others are
    /// ignored).
    fn sequence(&mut self, t0: f64, dt: f64, u: &nalgebra::DMatrix<f64>) {
        if dt > 0.0 && dt.is_finite() && t0.is_finite() && u.ncols() == self.problem.control_dim() && u.iter().all(|v| v.is_finite()) {
            self.plan = Some((t0, dt, u.clone()));
        }
    }

    /// False during the simulated controller outage.
    fn link_up(&self) -> bool {
        !(self.cfg.outage_s > 0.0 && (self.outage_at..self.outage_at + self.cfg.outage_s).contains(&self.t))
    }

    /// The state estimate the plant publishes: the true state plus noise and mass bias.
    fn measured_state(&mut self) -> DVector<f64> {
        let mut x = self.x.clone();
        if self.kind == ProblemKind::Descent {
            let (sp, sv) = (self.cfg.pos_noise_m, self.cfg.vel_noise_mps);
            for i in 0..3 {
                if sp > 0.0 {
                    x[i] += Normal::new(0.0, sp).expect("positive std").sample(&mut self.rng);
                }
                if sv > 0.0 {
                    x[3 + i] += Normal::new(0.0, sv).expect("positive std").sample(&mut self.rng);
                }
            }
            x[6] *= self.mass_bias;
        }
        x
    }

    /// Receives a command at plant time `t` (it takes effect at `t + latency_s`). A command
    /// with the wrong length or a NaN is ignored (returns false) and the held command stays.
    fn command(&mut self, u: &DVector<f64>) -> bool {
        if u.len() != self.problem.control_dim() || u.iter().any(|v| !v.is_finite()) {
            return false;
        }
        if self.kind == ProblemKind::Descent {
            let (_, rho1, rho2, max_tilt) = self.bounds;
            let n = u.norm();
            let v = &mut self.violations;
            v.thrust = v.thrust.max(n / rho2 - 1.0).max(1.0 - n / rho1);
            let tilt = crate::problems::PoweredDescent::tilt(u.as_slice());
            v.pointing_deg = v.pointing_deg.max((tilt - max_tilt).to_degrees());
        }
        self.pending.push_back((self.t + self.cfg.latency_s, u.clone()));
        true
    }

    /// Advances by `dt` [s] (RK4 at the internal rate, zero-order hold on the command in
    /// effect). Returns the result when the episode ends during the step.
    fn advance(&mut self, dt: f64) -> Option<&EpisodeResult> {
        if self.result.is_some() {
            return self.result.as_ref();
        }
        let h_max = 1.0 / self.cfg.internal_hz;
        let t_end = self.t + dt;
        while self.t < t_end - 1e-12 {
            while self.pending.front().is_some_and(|(ta, _)| *ta <= self.t + 1e-12) {
                self.u = self.pending.pop_front().expect("checked").1;
            }
            let h = h_max.min(t_end - self.t);
            let u = self.applied_control();
            let mut next = self.problem.step(&self.x, &u, h);
            if self.kind == ProblemKind::Descent && self.accel_bias != Vector3::zeros() {
                // the unmodelled constant acceleration, integrated exactly (no mass flow)
                for i in 0..3 {
                    next[i] += 0.5 * self.accel_bias[i] * h * h;
                    next[3 + i] += self.accel_bias[i] * h;
                }
            }
            if self.kind == ProblemKind::Descent && next[2] <= self.x_target[2] {
                let s = ((self.x[2] - self.x_target[2]) / (self.x[2] - next[2])).clamp(0.0, 1.0);
                let xc = &self.x + (&next - &self.x) * s;
                self.finish(xc, self.t + s * h, true);
                return self.result.as_ref();
            }
            self.x = next;
            self.t += h;
            if self.kind == ProblemKind::Descent {
                let (dx, dy, dz) = (self.x[0] - self.x_target[0], self.x[1] - self.x_target[1], self.x[2] - self.x_target[2]);
                let depth = self.bounds.0 * (dx * dx + dy * dy).sqrt() - dz;
                if depth > self.violations.glide_slope_m && depth > GLIDE_SLOPE_TOL_FACTOR * self.bounds.0 * self.success_tol.0 {
                    log::debug!(
                        "plant: {depth:.2} m under the glide slope at t {:.2} s, altitude {dz:.1} m, {:.1} m from the site",
                        self.t,
                        (dx * dx + dy * dy).sqrt()
                    );
                }
                self.violations.glide_slope_m = self.violations.glide_slope_m.max(depth);
            }
        }
        if self.t >= self.cfg.max_time_s - 1e-9 {
            self.finish(self.x.clone(), self.t, false);
        }
        self.result.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plant(x0: Vec<f64>) -> (SimPlant, ProblemConfig) {
        let p = ProblemConfig::new(ProblemKind::Descent);
        let plant = SimPlant::new(&p, &SimConfig::default(), DVector::from_vec(x0), DVector::zeros(7), 0).unwrap();
        (plant, p)
    }

    /// Flies `cmd(x)` until touchdown (at most 200 s).
    fn fly(plant: &mut SimPlant, cmd: impl Fn(&DVector<f64>) -> DVector<f64>) -> EpisodeResult {
        for _ in 0..20_000 {
            let u = cmd(&plant.true_state().clone());
            plant.command(&u);
            if let Some(r) = plant.advance(0.01) {
                return r.clone();
            }
        }
        panic!("no touchdown");
    }

    /// A sink-and-centre law: vertical thrust that sinks at 0.3 m/s, a horizontal PD toward the
    /// site (at most 0.8 of the vertical acceleration: inside the pointing cone), in the annulus.
    fn sink(p: &ProblemConfig, x: &DVector<f64>) -> DVector<f64> {
        let g = -p.descent.gravity[2];
        let az = g + 2.0 * (-0.3 - x[5]);
        let mut ah = [-0.5 * x[3] - 0.25 * x[0], -0.5 * x[4] - 0.25 * x[1]];
        let h = ah[0].hypot(ah[1]);
        if h > 0.8 * az {
            ah = [ah[0] * 0.8 * az / h, ah[1] * 0.8 * az / h];
        }
        let t = DVector::from_vec(vec![x[6] * ah[0], x[6] * ah[1], x[6] * az]);
        let n = t.norm();
        t * (n.clamp(p.descent.rho1(), p.descent.rho2()) / n)
    }

    #[test]
    fn a_soft_touchdown_inside_the_cone_succeeds() {
        let (mut pl, p) = plant(vec![0.2, 0.0, 3.0, 0.0, 0.0, -0.3, 1700.0]);
        let r = fly(&mut pl, |x| sink(&p, x));
        assert!(r.touched_down && r.position_error < 1.0 && r.speed < 0.5, "{r:?}");
        assert!(r.success && r.glide_slope_violation_m < 0.1 && r.thrust_violation < 1e-12 && r.pointing_violation_deg < 1e-9, "{r:?}");
    }

    #[test]
    fn a_soft_touchdown_fails_after_leaving_the_glide_slope_or_an_inadmissible_command() {
        // starts 40 m out at 8 m: 2.7 m under the 15 deg cone, then sinks onto the site
        let (mut pl, p) = plant(vec![40.0, 0.0, 8.0, 0.0, 0.0, -0.3, 1700.0]);
        let r = fly(&mut pl, |x| sink(&p, x));
        assert!(r.touched_down && r.position_error < 1.0 && r.speed < 0.5, "{r:?}");
        assert!(!r.success && r.glide_slope_violation_m > 2.0, "{r:?}");
        // the same soft touchdown inside the cone, with one command above rho2
        let (mut pl, p) = plant(vec![0.2, 0.0, 3.0, 0.0, 0.0, -0.3, 1700.0]);
        pl.command(&DVector::from_vec(vec![0.0, 0.0, 1.05 * p.descent.rho2()]));
        let r = fly(&mut pl, |x| sink(&p, x));
        assert!(r.touched_down && r.position_error < 1.0 && r.speed < 0.5, "{r:?}");
        assert!(!r.success && (r.thrust_violation - 0.05).abs() < 1e-9, "{r:?}");
    }
}
