//! The powered-descent mission: a shrinking horizon towards a landing time, the touchdown gate,
//! the terminal phase, the terminal correction with landing-time retiming, the mass guard and the
//! sink.
//!
//! - **Time-to-go** `t_go = t_land - stamp`, with `t_land = goal stamp + goal t_go`; a goal with
//!   `t_go = 0` lets the controller choose: the minimum-fuel `t_f` of LCvx from the first state,
//!   solved once per goal.
//! - **Touchdown gate** (`controller.gate_altitude_m`, `gate_sink_rate_mps`): plans aim
//!   `gate_altitude_m` above the site with `-gate_sink_rate_mps` vertical speed at `t_land`; from
//!   `t_land` the vehicle sinks upright at that rate until touchdown ([`Phase::FinalDescent`]).
//!   A plan that decelerates to zero speed at the ground touches down at `sqrt(2 a dz)` for an
//!   altitude error `dz` (0.9 m/s for 10 cm at 4 m/s^2); the gate makes the touchdown speed the
//!   sink rate instead. Without a gate, cycles after `t_land` are FAILED
//!   ([`Rejected::PastLandingTime`]) with the same sink as the safe command.
//! - **Terminal phase** (`t_go <= terminal_phase_s`, default 3 s): the network was trained on
//!   `t_go >= 10%` of `t_f`, so the controller follows the last refined plan instead
//!   ([`Phase::FollowReference`]), finished again from every measured state.
//! - **Finish** = terminal correction ([`crate::control::correction`]) onto the aim point in the
//!   plant model; when the corrected plan still misses by more than `retime_threshold` success
//!   tolerances (typically thrust saturated on the final burn), or passes under the ground before
//!   its end (a vehicle arriving early; the depth counts as a miss), landing times moved by
//!   +0.25, +0.5, +1, +2, -0.25, -0.5, -1, -2 s are tried with the same controls stretched over the new horizon
//!   and corrected again; the best is adopted if it at least halves the miss, moving `t_land`
//!   (at most `max_retime_s` in all per goal).
//! - **Keeping the reserve by landing later** (`reserve_retime_s`): a finished plan that meets
//!   the aim point only with the thrust reserve released (a vehicle flown at its minimum-fuel
//!   t_f ends on a full-thrust burn), with more than [`RESERVE_RETIME_MIN_T_GO_S`] left, is
//!   corrected again at landing times moved by +0.5, +1, +2, +3, +4 s; the first at which it
//!   keeps the reserve and meets the aim point is adopted (at most `reserve_retime_s` in all per
//!   goal). The reserve is what a thrust loss on the final burn is corrected with.
//! - **Warm candidate** (`controller.warm_correction`): the previous finished plan, resampled
//!   to the state's time, is corrected too; the one that meets the aim point (both: the one with
//!   less fuel; neither: the smaller miss) is kept. Corrected from a state 0.1 s earlier, it
//!   converges in a step or two and keeps the thrust reserve where the network's fresh plan may
//!   need more steps than the cap. When both meet the aim point and one passes deeper under the
//!   glide-slope cone than the other (by more than 0.5 m), the shallower one is kept.
//! - **Glide-slope fallback**: the correction keeps a plan in the glide-slope cone where it can
//!   ([`crate::control::correction`]); a finished plan that still passes more than
//!   [`CONE_FALLBACK_M`] under it is replaced, when the cycle has time left, by the LCvx optimum at
//!   the same t_go from the measured state (the convex problem has the cone as a constraint;
//!   10-15 ms on the dev machine), corrected in the plant model. From then on the warm candidate
//!   carries it and the network's plans that pass under the cone lose to it. The network's plans
//!   are fuel-shaped but not constrained: for a vehicle far off to the side (1,490 m at 1,585 m,
//!   the edge of the training distribution) they flew low and flat, and the loop went 58 m under
//!   the cone or into the ground (seed 17 episode 32, docs/robustness.md).
//! - **Divert**: a finished plan that still misses by more than 2 tolerance units (the aim
//!   point is out of reach, e.g. after a thrust loss on the final burn) is corrected once more
//!   with the horizontal position tolerance x20: altitude and touchdown speed come first, the
//!   site second (minimum-landing-error guidance, Blackmore, Acikmese & Scharf 2010).
//! - **Finish without the correction** (`terminal_correction.enabled: false`): the policy's plan
//!   unchanged, or with `retime_with_policy` the same landing-time moves, each candidate planned
//!   by the policy itself at the moved t_go and judged in its in-loop model
//!   ([`DescentMission::retime_with_policy`]).
//! - **Safe command** (a FAILED cycle): with a previous plan, its continuation at the state's
//!   time (the safest thing a lander can do with a bad input is keep flying the last good plan;
//!   after `t_land` that plan is the sink); without one, or when the landing time has passed
//!   without a gate ([`Rejected::PastLandingTime`]), the sink: vertical thrust
//!   `m (|g| + k_v (-s - v_z))` (`s` the gate's sink rate, 1 m/s without a gate; braking harder
//!   when needed to reach `s` 0.1 m above the site; `k_v` = 2 /s), horizontal
//!   `m (-k_l v_xy - k_p (r_xy - r_t))` (`k_l` = `gate_lateral_gain_per_s`, 2 /s by default;
//!   `k_p` = `gate_lateral_position_gain_per_s2`, by default `k_l^2 / 8`) with the tilt held to
//!   `gate_max_tilt_deg` (0, the default:
//!   90% of the pointing limit), projected onto the thrust annulus and pointing cone, with the mass
//!   clamped to `[m_dry, m_wet]`; without a valid state `0.95 m_wet |g|` upright.
//! - **Plausibility gates** (`controller.plausibility`): a state whose mass is outside
//!   `[m_dry (1 - tol), m_wet (1 + tol)]` (tol = `mass_tolerance`, 5%: [1430, 2000] kg for the
//!   default vehicle; a vehicle model heavier than that must say so in `problem.descent`), that
//!   is lower than `min_altitude_m` above the site, farther than `max_range_m` from it or faster
//!   than `max_speed_factor v_max`, or whose `t_land - stamp` is longer than any flight, is
//!   refused; goals are checked in `check_goal` (docs/reliability.md).

use std::time::Instant;

use nalgebra::{DMatrix, DVector};

use super::observer::{AccelObserver, PositionFilter};
use super::{check_finite, check_goal_t_go, Finished, Mission, Phase, Replan};
use crate::config::{ControllerConfig, ProblemConfig};
use crate::control::correction::{residual, TerminalCorrector};
use crate::control::io::{GoalInput, Rejected};
use crate::error::ConfigError;
use crate::plan::hold;
use crate::plan::Plan;
use crate::problems::{project_one, DescentParams, PoweredDescent, Problem};
use crate::solvers::{self, Instance, SolverSettings};

/// Layout of the descent state `x = [r (3) m, v (3) m/s, m kg]` (z up, landing frame).
mod idx {
    /// First position entry (x, y, z = altitude).
    pub const POS: usize = 0;
    /// Altitude entry.
    pub const ALT: usize = 2;
    /// First velocity entry.
    pub const VEL: usize = 3;
    /// Vertical velocity entry.
    pub const VEL_Z: usize = 5;
    /// Mass entry.
    pub const MASS: usize = 6;
}

/// Two finished candidates that both meet the aim point are chosen by fuel unless one passes
/// deeper under the glide-slope cone than the other by more than this (tolerance units).
const CONE_PREFERENCE: f64 = 0.5;

/// A finished plan passing deeper than this under the glide-slope cone [m] is replaced by the LCvx
/// optimum at its t_go when the cycle has time for it (see the module docs).
pub const CONE_FALLBACK_M: f64 = 0.5;

/// The LCvx glide-slope fallback starts only with at least this much of the cycle left [s].
const CONE_FALLBACK_MIN_S: f64 = 8e-3;

/// A finished plan that still misses by more than this (tolerance units) is diverted.
const DIVERT_THRESHOLD: f64 = 2.0;
/// The divert counts horizontal position errors this many times less (their tolerance x20).
const DIVERT_RELAX: f64 = 20.0;

/// Landing-time moves tried by retiming [s], in order.
const RETIME_MOVES_S: [f64; 8] = [0.25, 0.5, 1.0, 2.0, -0.25, -0.5, -1.0, -2.0];

/// Landing-time moves tried to keep the thrust reserve [s], in order (see the module docs).
const RESERVE_RETIME_MOVES_S: [f64; 5] = [0.5, 1.0, 2.0, 3.0, 4.0];
/// The landing time is moved to keep the reserve only with more than this left [s]: later, a
/// longer flight no longer buys braking authority, only a longer hover.
const RESERVE_RETIME_MIN_T_GO_S: f64 = 10.0;

#[derive(Debug, Clone, Default)]
struct GoalState {
    /// The goal's own t_go [s] (0: the controller chooses).
    t_go: f64,
    /// Landing time [s], once known.
    t_land: Option<f64>,
    /// Sum of |landing-time moves| so far [s] (bounded by `max_retime_s`).
    retimed_s: f64,
    /// Sum of the landing-time moves that kept the thrust reserve so far [s] (bounded by
    /// `reserve_retime_s`).
    reserve_retimed_s: f64,
    /// The last failed t_f search: its state stamp [s] and reason (retried after
    /// [`T_GO_RETRY_S`], not every cycle: one search takes hundreds of milliseconds).
    search_failed: Option<(f64, String)>,
}

/// Height above the site [m] by which the final descent's sink law has braked to the sink rate
/// (see `DescentMission::sink`).
const BRAKE_FLOOR_M: f64 = 0.1;

/// Vertical velocity gain [1/s] of the sink law (toward the sink rate; the horizontal gains are
/// `controller.gate_lateral_gain_per_s`).
const SINK_KV: f64 = 2.0;

/// The Euclidean norm of a 3-vector `v`.
fn norm3(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Seconds between t_f searches after one failed.
pub const T_GO_RETRY_S: f64 = 1.0;

/// See the module docs.
#[derive(Debug)]
pub struct DescentMission {
    problem_cfg: ProblemConfig,
    problem: PoweredDescent,
    cfg: ControllerConfig,
    corrector: TerminalCorrector,
    goal: GoalState,
    observer: AccelObserver,
    position_filter: PositionFilter,
    /// The last finished plan (the warm candidate of the next finish).
    finished: Option<Source>,
}

/// Controls `u` `[N, 3]` finished for the state at `stamp` [s] with step `dt` [s].
#[derive(Debug, Clone)]
struct Source {
    stamp: f64,
    dt: f64,
    u: DMatrix<f64>,
}

impl DescentMission {
    /// The longest a descent can last [s]: burning at the minimum thrust `rho1` until the
    /// propellant is gone, `(m_wet - m_dry) g0 Isp / rho1` (177.6 s for the default vehicle).
    fn max_t_go(&self) -> f64 {
        let d = self.params();
        (d.m_wet - d.m_dry) * d.g0 * d.isp / d.rho1()
    }

    /// The mission for the descent problem `problem` with controller settings `cfg`.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem or controller config.
    pub fn new(problem: &ProblemConfig, cfg: &ControllerConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut corrector = TerminalCorrector::new(problem, cfg.terminal_correction)?;
        // the glide-slope cone's apex is the landing site, under the gate's aim point
        corrector.set_cone_apex_below_aim(cfg.gate_altitude_m);
        Ok(Self {
            problem_cfg: problem.clone(),
            problem: PoweredDescent::new(problem.descent.clone())?,
            cfg: cfg.clone(),
            corrector,
            goal: GoalState::default(),
            observer: AccelObserver::default(),
            position_filter: PositionFilter::default(),
            finished: None,
        })
    }

    fn params(&self) -> &DescentParams {
        self.problem.params()
    }

    fn gate_on(&self) -> bool {
        self.cfg.gate_altitude_m > 0.0
    }

    /// The upright sink command (see the module docs), length 3.
    fn sink(&self, x: Option<&DVector<f64>>, x_target: Option<&DVector<f64>>) -> DVector<f64> {
        let p = self.params();
        let m = x.map(|x| x[idx::MASS]).filter(|m| m.is_finite()).map_or(p.m_wet, |m| m.clamp(p.m_dry, p.m_wet));
        let g = DVector::from_column_slice(&p.gravity).norm();
        let sink = if self.gate_on() { self.cfg.gate_sink_rate_mps } else { 1.0 };
        // the disturbance observer's estimate is cancelled (zero when off or before a sample)
        let b = self.observer.estimate();
        // vertical: track the sink rate (gain SINK_KV), and brake at least hard enough to be down to
        // it BRAKE_FLOOR_M above the site (a vehicle reaching the gate fast: measured, a P law
        // alone touched down at 1.3 m/s from 0.9 m at -2 m/s under the harsh disturbances)
        let a = x
            .map(|x| {
                let track = g + SINK_KV * (-sink - x[idx::VEL_Z]);
                let h = x[idx::ALT] - x_target.map_or(0.0, |t| t[idx::ALT]) - BRAKE_FLOOR_M;
                let v = x[idx::VEL_Z];
                let brake = if v < -sink { g + (v * v - sink * sink) / (2.0 * h.max(BRAKE_FLOOR_M)) } else { f64::NEG_INFINITY };
                track.max(brake) - b.z
            })
            .unwrap_or(0.95 * g)
            .max(0.0);
        // horizontal: k_v = gate_lateral_gain_per_s, k_p = gate_lateral_position_gain_per_s2
        // (0: k_v^2 / 8, damping 1.4)
        let kv = self.cfg.gate_lateral_gain_per_s;
        let kp = if self.cfg.gate_lateral_position_gain_per_s2 > 0.0 { self.cfg.gate_lateral_position_gain_per_s2 } else { kv * kv / 8.0 };
        let (ax, ay) = match (x, x_target) {
            (Some(x), Some(t)) => (-kv * x[idx::VEL] - kp * (x[idx::POS] - t[idx::POS]), -kv * x[idx::VEL + 1] - kp * (x[idx::POS + 1] - t[idx::POS + 1])),
            (Some(x), None) => (-kv * x[idx::VEL], -kv * x[idx::VEL + 1]),
            _ => (0.0, 0.0),
        };
        let (ax, ay) = (ax - b.x, ay - b.y);
        let tilt_max = if self.cfg.gate_max_tilt_deg > 0.0 { self.cfg.gate_max_tilt_deg.to_radians() } else { 0.9 * p.pointing_max_deg.to_radians() };
        let h_max = a * tilt_max.min(0.9 * p.pointing_max_deg.to_radians()).min(1.5).tan();
        let h = ax.hypot(ay);
        let (ax, ay) = if h > h_max && h > 0.0 { (ax * h_max / h, ay * h_max / h) } else { (ax, ay) };
        let (ax, ay) = if ax.is_finite() && ay.is_finite() { (ax, ay) } else { (0.0, 0.0) };
        let m = m / self.observer.effectiveness();
        project_one(&DVector::from_vec(vec![ax * m, ay * m, a * m]), &self.problem.control_constraint())
    }

    /// Retiming without the correction (`retime_with_policy`): when the policy's plan `u` misses
    /// the aim point by more than `retime_threshold` in the policy's own in-loop model, the same
    /// landing-time moves as [`DescentMission::retime`], each candidate planned by the policy
    /// (`replan`), the best adopted if it at least halves the miss. Judged in the in-loop model,
    /// not the plant: the in-loop / plant mismatch (several tolerances at t_go = 40 s) is absorbed
    /// by the receding horizon as t_go shrinks and no landing time removes it; what retiming
    /// removes is a landing time the policy cannot plan to (thrust saturated on the final burn).
    /// Judged in the plant instead, 20 nominal episodes landed 95% at 18 ms per cycle (a retiming
    /// search nearly every cycle) against 100% at 2.7 ms.
    #[allow(clippy::too_many_arguments)]
    fn retime_with_policy(
        &mut self,
        stamp: f64,
        x: &DVector<f64>,
        aim: &DVector<f64>,
        t_go: f64,
        u: DMatrix<f64>,
        deadline: Instant,
        replan: &mut Replan<'_>,
    ) -> Finished {
        let tc = self.cfg.terminal_correction;
        let horizon = self.problem.horizon() as f64;
        let unchanged = |u| Finished { u, t_go, retimed_s: None, correction_steps: 0 };
        let Some(model) = self.corrector.in_loop_model() else { return unchanged(u) };
        let r0 = residual(model, x, aim, &u, t_go / horizon);
        if r0.is_nan() || r0 <= tc.retime_threshold {
            return unchanged(u);
        }
        let mut best: Option<(f64, f64, DMatrix<f64>)> = None;
        for delta in RETIME_MOVES_S {
            if self.goal.retimed_s + delta.abs() > tc.max_retime_s || t_go + delta < 0.5 || Instant::now() >= deadline {
                continue;
            }
            let tg = t_go + delta;
            let Some(uc) = replan(tg) else { continue };
            let r = residual(model, x, aim, &uc, tg / horizon);
            if r.is_finite() && best.as_ref().is_none_or(|b| r < b.0) {
                best = Some((r, tg, uc));
            }
            if r <= tc.retime_threshold {
                break;
            }
        }
        match best {
            Some((r, tg, uc)) if r < 0.5 * r0 => {
                self.goal.t_land = Some(stamp + tg);
                self.goal.retimed_s += (tg - t_go).abs();
                log::info!("descent: landing time moved by {:+.2} s by re-planning (predicted miss {:.3} -> {:.3} in tolerance units)", tg - t_go, r0, r);
                Finished { u: uc, t_go: tg, retimed_s: Some(tg - t_go), correction_steps: 0 }
            }
            _ => unchanged(u),
        }
    }

    /// Landing-time adjustment of a corrected plan that still misses by `r0` (see the module docs).
    #[allow(clippy::too_many_arguments)]
    fn retime(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64, u: DMatrix<f64>, r0: f64, deadline: Instant, steps: usize) -> Finished {
        let tc = self.cfg.terminal_correction;
        let mut steps = steps;
        let horizon = self.problem.horizon() as f64;
        let mut best: Option<(f64, f64, DMatrix<f64>)> = None;
        for delta in RETIME_MOVES_S {
            if self.goal.retimed_s + delta.abs() > tc.max_retime_s || t_go + delta < 0.5 || Instant::now() >= deadline {
                continue;
            }
            let tg = t_go + delta;
            let (uc, rep) = self.corrector.correct(x, aim, &u, tg / horizon, Some(deadline));
            steps += rep.iterations;
            // a plan that passes under the ground counts as a miss of its depth (tolerances)
            let r = rep.residual_after + self.dip(x, aim, &uc, tg / horizon);
            if best.as_ref().is_none_or(|b| r < b.0) {
                best = Some((r, tg, uc));
            }
            if r <= tc.retime_threshold {
                break;
            }
        }
        match best {
            Some((r, tg, uc)) if r < 0.5 * r0 => {
                self.goal.t_land = Some(stamp + tg);
                self.goal.retimed_s += (tg - t_go).abs();
                log::info!("descent: landing time moved by {:+.2} s (predicted miss {:.3} -> {:.3} in tolerance units)", tg - t_go, r0, r);
                Finished { u: uc, t_go: tg, retimed_s: Some(tg - t_go), correction_steps: steps }
            }
            _ => Finished { u, t_go, retimed_s: None, correction_steps: steps },
        }
    }

    /// Keeping the reserve by landing later (see the module docs): `u` meets the aim point at
    /// `t_go` [s] only with the thrust reserve released; the first landing time moved by
    /// [`RESERVE_RETIME_MOVES_S`] at which the correction of `u` keeps the reserve and meets the
    /// aim point (above the ground) is adopted, else `u` is returned unchanged.
    #[allow(clippy::too_many_arguments)]
    fn keep_reserve(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant, steps: usize) -> Finished {
        let tc = self.cfg.terminal_correction;
        let mut steps = steps;
        if tc.reserve_retime_s > 0.0 && t_go > RESERVE_RETIME_MIN_T_GO_S {
            let horizon = self.problem.horizon() as f64;
            for delta in RESERVE_RETIME_MOVES_S {
                if self.goal.reserve_retimed_s + delta > tc.reserve_retime_s + 1e-9 || Instant::now() >= deadline {
                    break;
                }
                let tg = t_go + delta;
                let (uc, rep) = self.corrector.correct(x, aim, &u, tg / horizon, Some(deadline));
                steps += rep.iterations;
                if !rep.released && rep.residual_after + self.dip(x, aim, &uc, tg / horizon) <= tc.retime_threshold {
                    self.goal.t_land = Some(stamp + tg);
                    self.goal.reserve_retimed_s += delta;
                    log::info!(
                        "descent: landing time moved by {delta:+.2} s to keep the thrust reserve ({:.0}% of rho2) at t_go {t_go:.2} s",
                        100.0 * tc.thrust_margin
                    );
                    return Finished { u: uc, t_go: tg, retimed_s: Some(delta), correction_steps: steps };
                }
            }
        }
        Finished { u, t_go, retimed_s: None, correction_steps: steps }
    }

    /// How far the plan `u` passes under the ground before its end, in position tolerances (see
    /// [`TerminalCorrector::dip_below`]; the floor is the site's altitude).
    fn dip(&self, x: &DVector<f64>, aim: &DVector<f64>, u: &DMatrix<f64>, dt: f64) -> f64 {
        let floor = aim[idx::ALT] - if self.gate_on() { self.cfg.gate_altitude_m } else { 0.0 };
        self.corrector.dip_below(x, u, dt, floor) / self.params().success_position_tol
    }

    /// The glide-slope fallback (see the module docs): the LCvx optimum from `x` to `aim` at
    /// `t_go` [s], corrected (in the full thrust range) in the plant model with step `dt` [s]; `None` when less than
    /// [`CONE_FALLBACK_MIN_S`] is left before `deadline`, or when LCvx finds no plan in time.
    fn cone_fallback(
        &self,
        x: &DVector<f64>,
        aim: &DVector<f64>,
        t_go: f64,
        dt: f64,
        deadline: Instant,
    ) -> Option<(DMatrix<f64>, crate::control::correction::CorrectionReport)> {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        if left < CONE_FALLBACK_MIN_S {
            return None;
        }
        // the solve may use all but a quarter of what is left (the correction and publication follow)
        let settings = SolverSettings { time_limit_s: 0.75 * left, ..SolverSettings::default() };
        // in the full thrust range: a vehicle that has gone under the cone is near the edge of
        // what it can still fly (seed 17 episode 32: no trajectory at its t_go within a 5% reserve)
        let mut solver = solvers::lcvx::LcvxSolver::new(self.problem.clone(), settings, solvers::lcvx::TfSearch::default()).ok()?;
        let mut x0 = x.clone();
        x0[idx::MASS] = x0[idx::MASS].min(self.params().m_wet);
        let sol = solvers::OcpSolver::solve(&mut solver, &Instance { x0, x_target: aim.clone(), t_go: Some(t_go) }).ok()?;
        if sol.u.nrows() != self.problem.horizon() {
            return None;
        }
        Some(self.corrector.correct_full_range(x, aim, &sol.u, dt, Some(deadline)))
    }

    /// [`Mission::finish`] without the bookkeeping (see the module docs).
    #[allow(clippy::too_many_arguments)]
    fn finish_plan(
        &mut self,
        stamp: f64,
        x: &DVector<f64>,
        aim: &DVector<f64>,
        t_go: f64,
        u: DMatrix<f64>,
        deadline: Instant,
        replan: &mut Replan<'_>,
    ) -> Finished {
        let tc = self.cfg.terminal_correction;
        if !tc.enabled {
            return if tc.retime_with_policy && tc.max_retime_s > 0.0 {
                self.retime_with_policy(stamp, x, aim, t_go, u, deadline, replan)
            } else {
                Finished { u, t_go, retimed_s: None, correction_steps: 0 }
            };
        }
        let dt = t_go / self.problem.horizon() as f64;
        let (mut u, mut rep) = self.corrector.correct(x, aim, &u, dt, Some(deadline));
        let mut steps = rep.iterations;
        // the previous finished plan resampled to this state is the other candidate: it was
        // already corrected (with the reserve) from a state 0.1 s ago, so it converges in a step
        // or two where the network's fresh plan may need more than the step cap
        if let Some(prev) = self.finished.as_ref().filter(|p| p.stamp < stamp && stamp - p.stamp <= 1.0 && self.cfg.warm_correction) {
            let n = self.problem.horizon();
            let up = crate::control::receding::shift(&prev.u, prev.stamp, prev.dt, stamp, t_go, n);
            let (uw, repw) = self.corrector.correct(x, aim, &up, dt, Some(deadline));
            steps += repw.iterations;
            let fuel = |u: &DMatrix<f64>| u.row_iter().map(|r| r.norm()).sum::<f64>();
            let take = match (rep.residual_after <= tc.retime_threshold, repw.residual_after <= tc.retime_threshold) {
                (false, true) => true,
                // both meet the aim point: the one that keeps to the glide slope, else the cheaper
                (true, true) if (rep.cone_depth - repw.cone_depth).abs() > CONE_PREFERENCE => repw.cone_depth < rep.cone_depth,
                (true, true) => fuel(&uw) < fuel(&u),
                (true, false) => false,
                (false, false) => repw.residual_after < rep.residual_after,
            };
            if take {
                (u, rep) = (uw, repw);
            }
        }
        log::debug!(
            "finish at stamp {stamp:.2}: t_go {t_go:.2} s, alt {:.1} m, v_z {:.2} m/s, r_xy {:.1?} v_xy {:.2?}, miss {:.3} -> {:.3} (tolerance units, {} steps), under the glide slope {:.2} m, effectiveness {:.3}, acceleration estimate {:?} m/s^2",
            x[idx::ALT],
            x[idx::VEL_Z],
            [x[0], x[1]],
            [x[3], x[4]],
            rep.residual_before,
            rep.residual_after,
            rep.iterations,
            rep.cone_depth * self.params().success_position_tol,
            self.observer.effectiveness(),
            self.corrector.accel_bias()
        );
        if rep.cone_depth * self.params().success_position_tol > CONE_FALLBACK_M {
            if let Some((ul, repl)) = self.cone_fallback(x, aim, t_go, dt, deadline) {
                steps += repl.iterations;
                if repl.residual_after <= tc.retime_threshold && repl.cone_depth < rep.cone_depth {
                    log::debug!(
                        "descent: glide-slope fallback at stamp {stamp:.2}: the LCvx plan passes {:.2} m under the cone (the corrected plan {:.2} m)",
                        repl.cone_depth * self.params().success_position_tol,
                        rep.cone_depth * self.params().success_position_tol
                    );
                    (u, rep) = (ul, repl);
                }
            }
        }
        let dip = self.dip(x, aim, &u, dt);
        if rep.residual_after + dip <= tc.retime_threshold {
            return if rep.released {
                self.keep_reserve(stamp, x, aim, t_go, u, deadline, steps)
            } else {
                Finished { u, t_go, retimed_s: None, correction_steps: steps }
            };
        }
        if tc.max_retime_s <= 0.0 {
            return Finished { u, t_go, retimed_s: None, correction_steps: steps };
        }
        if rep.iterations >= tc.max_iterations {
            // cut short by the step cap, not stalled: the retiming baseline is the plan corrected
            // further at the current t_go (every moved time gets as many steps)
            (u, rep) = self.corrector.correct(x, aim, &u, dt, Some(deadline));
            steps += rep.iterations;
            if rep.residual_after + self.dip(x, aim, &u, dt) <= tc.retime_threshold {
                return Finished { u, t_go, retimed_s: None, correction_steps: steps };
            }
        }
        let r0 = rep.residual_after + self.dip(x, aim, &u, dt);
        self.retime(stamp, x, aim, t_go, u, r0, deadline, steps)
    }
}

impl Mission for DescentMission {
    fn set_config(&mut self, cfg: &ControllerConfig) {
        self.cfg = cfg.clone();
        self.corrector.set_settings(cfg.terminal_correction);
        self.corrector.set_cone_apex_below_aim(cfg.gate_altitude_m);
    }

    fn check_goal(&self, goal: &GoalInput) -> Result<DVector<f64>, Rejected> {
        if goal.x_target.len() != idx::MASS + 1 {
            return Err(Rejected::WrongDimension { what: "goal.x_target", got: goal.x_target.len(), want: idx::MASS + 1, problem: "descent".into() });
        }
        // the mass entry of the target is free (the vehicle lands with whatever is left)
        check_finite("goal.x_target", &goal.x_target[..idx::MASS])?;
        check_goal_t_go(goal.t_go)?;
        let (d, p) = (self.params(), &self.cfg.plausibility);
        let t_max = self.max_t_go();
        if goal.t_go != 0.0 && !(p.min_t_go_s..=t_max).contains(&goal.t_go) {
            return Err(Rejected::OutOfRange {
                what: "goal.t_go",
                value: goal.t_go,
                range: format!(
                    "[{}, {t_max:.1}] s, or 0 for the controller to choose (controller.plausibility.min_t_go_s; the longest burn at rho1 on the propellant)",
                    p.min_t_go_s
                ),
            });
        }
        let range = norm3(&goal.x_target[idx::POS..idx::POS + 3]);
        if range > p.max_range_m {
            return Err(Rejected::OutOfRange {
                what: "goal target distance from the frame's origin [m]",
                value: range,
                range: format!("[0, {}] m (controller.plausibility.max_range_m)", p.max_range_m),
            });
        }
        let speed = norm3(&goal.x_target[idx::VEL..idx::VEL + 3]);
        if speed > d.v_max {
            return Err(Rejected::OutOfRange { what: "goal target speed [m/s]", value: speed, range: format!("[0, {}] m/s (problem.descent.v_max)", d.v_max) });
        }
        let mut xt = DVector::from_column_slice(&goal.x_target);
        xt[idx::MASS] = self.params().m_dry;
        Ok(xt)
    }

    fn start_goal(&mut self, goal: &GoalInput) {
        let t_land = (goal.t_go > 0.0 && goal.stamp > 0.0).then_some(goal.stamp + goal.t_go);
        self.goal = GoalState { t_go: goal.t_go, t_land, ..Default::default() };
        self.observer.reset();
        self.position_filter.reset();
        self.finished = None;
        self.corrector.set_accel_bias([0.0; 3]);
        self.corrector.set_effectiveness(1.0);
    }

    fn first_plan(&self, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64) -> Option<DMatrix<f64>> {
        (t_go > 0.0 && t_go.is_finite()).then(|| crate::baseline::zem_zev_plan(&self.problem, x, aim, t_go, self.problem.horizon()))
    }

    fn observe(&mut self, stamp: f64, x: &DVector<f64>, command: Option<&DVector<f64>>) -> DVector<f64> {
        let g = self.params().gravity;
        self.observer.observe(stamp, x, command, &g, self.cfg.disturbance_observer_s);
        let b = self.observer.estimate();
        self.corrector.set_accel_bias([b.x, b.y, b.z]);
        self.corrector.set_effectiveness(self.observer.effectiveness());
        self.position_filter.filter(stamp, x, self.cfg.position_filter_gain)
    }

    fn check_state(&self, x: &DVector<f64>, x_target: &DVector<f64>) -> Result<(), Rejected> {
        let (d, p) = (self.params(), &self.cfg.plausibility);
        let (lo, hi) = (d.m_dry * (1.0 - p.mass_tolerance), d.m_wet * (1.0 + p.mass_tolerance));
        let mass = x.get(idx::MASS).copied().unwrap_or(f64::NAN);
        if !(lo..=hi).contains(&mass) {
            return Err(Rejected::OutOfRange {
                what: "state.x[6] (mass)",
                value: mass,
                range: format!("[{lo:.1}, {hi:.1}] kg (m_dry, m_wet and controller.plausibility.mass_tolerance)"),
            });
        }
        let height = x[idx::ALT] - x_target[idx::ALT];
        if height < p.min_altitude_m {
            return Err(Rejected::OutOfRange {
                what: "state altitude above the landing site [m]",
                value: height,
                range: format!(">= {} m (controller.plausibility.min_altitude_m)", p.min_altitude_m),
            });
        }
        let r: Vec<f64> = (0..3).map(|i| x[idx::POS + i] - x_target[idx::POS + i]).collect();
        let range = norm3(&r);
        if range > p.max_range_m {
            return Err(Rejected::OutOfRange {
                what: "state distance from the landing site [m]",
                value: range,
                range: format!("[0, {}] m (controller.plausibility.max_range_m)", p.max_range_m),
            });
        }
        let speed = norm3(&x.as_slice()[idx::VEL..idx::VEL + 3]);
        if speed > p.max_speed_factor * d.v_max {
            return Err(Rejected::OutOfRange {
                what: "state speed [m/s]",
                value: speed,
                range: format!("[0, {}] m/s (controller.plausibility.max_speed_factor x problem.descent.v_max)", p.max_speed_factor * d.v_max),
            });
        }
        Ok(())
    }

    fn aim(&self, x_target: &DVector<f64>) -> DVector<f64> {
        let mut aim = x_target.clone();
        if self.gate_on() {
            aim[idx::ALT] += self.cfg.gate_altitude_m;
            aim[idx::VEL_Z] -= self.cfg.gate_sink_rate_mps;
        }
        aim
    }

    fn t_go(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>) -> Result<f64, Rejected> {
        if let Some(t_land) = self.goal.t_land {
            // a state stamped long before the goal (a clock that jumped with it) asks for a
            // flight no vehicle can fly: refused, not planned over a horizon of that length
            let t_go = t_land - stamp;
            let t_max = self.max_t_go();
            if t_go > t_max {
                return Err(Rejected::OutOfRange {
                    what: "t_go at this state (t_land - stamp)",
                    value: t_go,
                    range: format!("<= {t_max:.1} s (the longest burn at rho1 on the propellant; state stamped before its goal?)"),
                });
            }
            return Ok(t_go);
        }
        let t_go = if self.goal.t_go > 0.0 {
            self.goal.t_go
        } else {
            if let Some((at, why)) = &self.goal.search_failed {
                if (stamp - at).abs() < T_GO_RETRY_S {
                    return Err(Rejected::NoTimeToGo(format!("{why} (the LCvx t_f search failed at stamp {at:.3}; retried {T_GO_RETRY_S} s later)")));
                }
            }
            let search = solvers::for_problem(&self.problem_cfg, SolverSettings::default())
                .map_err(|e| e.to_string())
                .and_then(|mut solver| solver.solve(&Instance { x0: x.clone(), x_target: aim.clone(), t_go: None }).map_err(|e| e.to_string()));
            match search {
                Ok(sol) => {
                    log::info!("t_go chosen by the LCvx minimum-fuel search: {:.2} s (state stamp {stamp:.3})", sol.t_go);
                    sol.t_go
                }
                Err(why) => {
                    self.goal.search_failed = Some((stamp, why.clone()));
                    return Err(Rejected::NoTimeToGo(why));
                }
            }
        };
        self.goal.t_land = Some(stamp + t_go);
        Ok(t_go)
    }

    fn phase(&self, t_go: f64) -> Result<Phase, Rejected> {
        if t_go <= 0.0 {
            return if self.gate_on() { Ok(Phase::FinalDescent) } else { Err(Rejected::PastLandingTime { late_s: -t_go }) };
        }
        Ok(if t_go <= self.cfg.terminal_phase_s { Phase::FollowReference } else { Phase::Refine })
    }

    fn final_descent(&self, x: &DVector<f64>, x_target: &DVector<f64>) -> (DMatrix<f64>, f64) {
        let cmd = self.sink(Some(x), Some(x_target));
        log::debug!(
            "final descent: alt {:.2} m, v {:.2?} m/s, r_xy {:.2?} m -> command {:.0?} N",
            x[idx::ALT],
            [x[idx::VEL], x[idx::VEL + 1], x[idx::VEL_Z]],
            [x[idx::POS], x[idx::POS + 1]],
            cmd.as_slice()
        );
        (hold(&cmd, self.problem.horizon()), (self.cfg.gate_altitude_m / self.cfg.gate_sink_rate_mps).max(0.1))
    }

    fn finish(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant, replan: &mut Replan<'_>) -> Finished {
        let mut f = self.finish_plan(stamp, x, aim, t_go, u, deadline, replan);
        // the aim point is out of reach (a thrust loss on the final burn): divert, giving up
        // horizontal accuracy for altitude and touchdown speed
        let tc = self.cfg.terminal_correction;
        let dt = f.t_go / self.problem.horizon() as f64;
        if tc.enabled && self.corrector.residual(x, aim, &f.u, dt) > DIVERT_THRESHOLD {
            let (ud, rep) = self.corrector.divert(x, aim, &f.u, dt, DIVERT_RELAX, Some(deadline));
            f.correction_steps += rep.iterations;
            if rep.iterations > 0 {
                log::debug!(
                    "descent: divert at stamp {stamp:.2} (miss {:.2} -> {:.2} with horizontal tolerances x{DIVERT_RELAX})",
                    rep.residual_before,
                    rep.residual_after
                );
                f.u = ud;
            }
        }
        self.finished = Some(Source { stamp, dt: f.t_go / self.problem.horizon() as f64, u: f.u.clone() });
        f
    }

    fn safe_command(&self, x: Option<&DVector<f64>>, x_target: Option<&DVector<f64>>, last: Option<&Plan>, stamp: f64, why: &Rejected) -> DVector<f64> {
        match last {
            Some(last) if !matches!(why, Rejected::PastLandingTime { .. }) => last.u.row(last.index_at(stamp)).transpose(),
            _ => self.sink(x, x_target),
        }
    }

    fn landing_time(&self) -> Option<f64> {
        self.goal.t_land
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProblemKind;
    use crate::problems::Simulator;

    fn setup() -> (DescentMission, ProblemConfig) {
        let p = ProblemConfig::new(ProblemKind::Descent);
        (DescentMission::new(&p, &ControllerConfig::default()).unwrap(), p)
    }

    fn goal(t_go: f64) -> GoalInput {
        GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go }
    }

    fn start(m: &mut DescentMission, g: &GoalInput) -> DVector<f64> {
        let xt = m.check_goal(g).unwrap();
        m.start_goal(g);
        xt
    }

    #[test]
    fn aim_is_the_gate_and_the_target_mass_is_free() {
        let (mut m, p) = setup();
        let xt = start(&mut m, &GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, f64::NAN], t_go: 40.0 });
        assert_eq!(xt[6], p.descent.m_dry, "a NaN mass in the target is replaced by the dry mass");
        let aim = m.aim(&xt);
        assert_eq!((aim[2], aim[5]), (1.0, -0.35), "1 m above the site, sinking at 0.35 m/s");
        let e = m
            .check_goal(&GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0, f64::INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0], t_go: 40.0 })
            .unwrap_err();
        assert!(matches!(e, Rejected::NonFinite { index: 1, .. }), "{e}");
    }

    /// The final descent's sink law brakes with the altitude left: a vehicle reaching the gate
    /// low and fast (0.6 m above the site at 2 m/s down, as measured under the harsh
    /// disturbances) still touches down under the 0.5 m/s success speed, and one on the gate's
    /// sink rate gets hover thrust.
    #[test]
    fn the_sink_law_brakes_a_fast_arrival_to_the_sink_rate() {
        let (mut m, p) = setup();
        let xt = start(&mut m, &goal(40.0));
        let g = DVector::from_column_slice(&p.descent.gravity);
        let on_rate = DVector::from_vec(vec![0.0, 0.0, 1.0, 0.0, 0.0, -0.35, 1600.0]);
        let hover = m.sink(Some(&on_rate), Some(&xt));
        assert!((hover[2] - 1600.0 * g.norm()).abs() < 1e-6 * hover[2], "{hover}");
        // fly it down: point mass, command at 10 Hz, Euler at 1 ms
        let mut x = DVector::from_vec(vec![0.3, -0.2, 0.6, 0.2, 0.1, -2.0, 1600.0]);
        let mut t = 0.0;
        while x[2] > 0.0 && t < 10.0 {
            let u = m.sink(Some(&x), Some(&xt));
            for _ in 0..100 {
                let a = &u / x[6] + &g;
                for i in 0..3 {
                    x[i] += 1e-3 * x[3 + i];
                    x[3 + i] += 1e-3 * a[i];
                }
                t += 1e-3;
                if x[2] <= 0.0 {
                    break;
                }
            }
        }
        let speed = x.rows(3, 3).norm();
        assert!(x[2] <= 0.0 && speed < p.descent.success_speed_tol, "touched down at {speed:.2} m/s after {t:.2} s: {x}");
    }

    #[test]
    fn horizon_shrinks_and_phases_follow_t_go() {
        let (mut m, _) = setup();
        let xt = start(&mut m, &goal(40.0));
        let aim = m.aim(&xt);
        let x = DVector::from_vec(vec![0.0, 0.0, 1000.0, 0.0, 0.0, -50.0, 1800.0]);
        assert_eq!(m.t_go(110.0, &x, &aim).unwrap(), 30.0);
        assert_eq!(m.t_go(137.5, &x, &aim).unwrap(), 2.5);
        assert_eq!(m.landing_time(), Some(140.0));
        assert_eq!(m.phase(30.0).unwrap(), Phase::Refine);
        assert_eq!(m.phase(2.5).unwrap(), Phase::FollowReference);
        assert_eq!(m.phase(-0.1).unwrap(), Phase::FinalDescent);
        let mut no_gate = ControllerConfig { gate_altitude_m: 0.0, ..Default::default() };
        m.set_config(&no_gate);
        assert!(matches!(m.phase(-0.1), Err(Rejected::PastLandingTime { .. })));
        no_gate.terminal_phase_s = 0.0;
        m.set_config(&no_gate);
        assert_eq!(m.phase(2.5).unwrap(), Phase::Refine);
    }

    #[test]
    fn a_failed_t_f_search_is_not_repeated_every_cycle() {
        let (mut m, _) = setup();
        let xt = start(&mut m, &GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go: 0.0 });
        let aim = m.aim(&xt);
        // climbing at 100 m/s from 50 m: no feasible landing
        let x = DVector::from_vec(vec![3000.0, 0.0, 50.0, 0.0, 0.0, 100.0, 1600.0]);
        let t = std::time::Instant::now();
        let first = m.t_go(100.0, &x, &aim).unwrap_err();
        let first_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let again = m.t_go(100.1, &x, &aim).unwrap_err();
        assert!(t.elapsed().as_secs_f64() < 0.1 * first_s.max(0.01), "the second cycle must not search again");
        assert!(again.to_string().contains("retried") && first.to_string().contains("t_go"), "{first} / {again}");
        assert_eq!(m.landing_time(), None);
    }

    #[test]
    fn mass_guard_and_safe_command() {
        let (mut m, p) = setup();
        let xt = start(&mut m, &goal(40.0));
        let mut x = DVector::from_vec(vec![10.0, 0.0, 500.0, 2.0, 0.0, -20.0, 1700.0]);
        assert!(m.check_state(&x, &xt).is_ok());
        x[6] = 100.0;
        assert!(matches!(m.check_state(&x, &xt), Err(Rejected::OutOfRange { .. })));
        x[6] = 1700.0;
        // no plan: the sink, admissible, pushing up (descending faster than the sink rate)
        let bad = Rejected::Stale { age_s: 1.0, max_s: 0.5 };
        let u = m.safe_command(Some(&x), Some(&xt), None, 110.0, &bad);
        let d = &p.descent;
        assert!(u.norm() >= d.rho1() - 1e-6 && u.norm() <= d.rho2() + 1e-6, "{u}");
        assert!(u[2] > 0.9 * u.norm());
        assert!(u[0] < 0.0, "pulls back towards the site and damps v_x");
        // with a plan and before t_land: the plan's control at the stamp
        let plan = Plan {
            stamp: 110.0,
            frame_id: String::new(),
            dt: 1.0,
            u: DMatrix::from_fn(50, 3, |k, j| if j == 2 { 6000.0 + k as f64 } else { 0.0 }),
            x: DMatrix::zeros(51, 7),
            cost: 0.0,
            status: crate::plan::PlanStatus::Converged,
            iterations: 1,
            solve_time_ms: 0.0,
        };
        assert_eq!(m.safe_command(Some(&x), Some(&xt), Some(&plan), 113.5, &bad)[2], 6003.0);
        // a bad input after t_land keeps flying the last plan (then the sink plan); the landing
        // time passed without a gate: the sink
        assert_eq!(m.safe_command(None, Some(&xt), Some(&plan), 141.0, &bad)[2], 6031.0, "the plan's control at the stamp");
        assert_eq!(m.safe_command(None, Some(&xt), Some(&plan), 500.0, &bad)[2], 6049.0, "clamped to the plan's last control");
        let past = Rejected::PastLandingTime { late_s: 1.0 };
        assert_eq!(m.safe_command(Some(&x), Some(&xt), Some(&plan), 141.0, &past), m.sink(Some(&x), Some(&xt)));
        // a refused mass never sizes the thrust: clamped to [m_dry, m_wet]
        x[6] = 1e5;
        assert_eq!(m.sink(Some(&x), Some(&xt)), {
            x[6] = p.descent.m_wet;
            m.sink(Some(&x), Some(&xt))
        });
    }

    #[test]
    fn implausible_states_and_goals_are_refused_each_with_its_reason() {
        // issue 14's catalogue: states and goals no vehicle of the problem can be in
        let (mut m, p) = setup();
        let d = &p.descent;
        let xt = start(&mut m, &goal(40.0));
        let ok = DVector::from_vec(vec![10.0, 0.0, 500.0, 2.0, 0.0, -20.0, 1700.0]);
        assert!(m.check_state(&ok, &xt).is_ok());
        let refused = |i: usize, v: f64| {
            let mut x = ok.clone();
            x[i] = v;
            match m.check_state(&x, &xt) {
                Err(Rejected::OutOfRange { what, .. }) => what,
                other => panic!("x[{i}] = {v}: {other:?}"),
            }
        };
        assert_eq!(refused(2, -100.0), "state altitude above the landing site [m]");
        assert_eq!(refused(2, -1e6), "state altitude above the landing site [m]");
        assert_eq!(refused(0, 1e9), "state distance from the landing site [m]");
        assert_eq!(refused(5, -1e6), "state speed [m/s]");
        assert_eq!(refused(6, 0.9 * d.m_dry), "state.x[6] (mass)");
        assert_eq!(refused(6, 1.1 * d.m_wet), "state.x[6] (mass)");
        // inside the tolerances: an estimator's few percent, a touchdown a little under the site
        for (i, v) in [(6, 0.97 * d.m_dry), (6, 1.03 * d.m_wet), (2, -5.0), (5, -250.0)] {
            let mut x = ok.clone();
            x[i] = v;
            assert!(m.check_state(&x, &xt).is_ok(), "x[{i}] = {v}");
        }
        // goals: t_go in [min_t_go_s, the longest burn at rho1] or 0; the target in the envelope
        let t_max = (d.m_wet - d.m_dry) * d.g0 * d.isp / d.rho1();
        assert!((170.0..180.0).contains(&t_max), "{t_max}");
        let what = |g: GoalInput| match m.check_goal(&g) {
            Err(Rejected::OutOfRange { what, .. }) => what,
            other => panic!("{g:?}: {other:?}"),
        };
        for t_go in [0.01, 1e4, t_max + 1.0] {
            assert_eq!(what(goal(t_go)), "goal.t_go");
        }
        for t_go in [0.0, 3.0, 40.0, t_max - 1.0] {
            assert!(m.check_goal(&goal(t_go)).is_ok(), "t_go {t_go}");
        }
        let far = GoalInput { x_target: vec![1e9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], ..goal(40.0) };
        assert_eq!(what(far), "goal target distance from the frame's origin [m]");
        let fast = GoalInput { x_target: vec![0.0, 0.0, 0.0, 0.0, 0.0, -1e3, 0.0], ..goal(40.0) };
        assert_eq!(what(fast), "goal target speed [m/s]");
    }

    #[test]
    fn without_the_correction_the_policy_retimes_a_landing_time_it_cannot_plan_to() {
        // the policy here is LCvx at a fixed t_go (exact in the in-loop model): asked for a
        // landing 2 s before its minimum-fuel t_f with the plan for t_f, the mission re-plans at
        // moved landing times and moves t_land; with `retime_with_policy` off it publishes the miss
        let p = ProblemConfig::new(ProblemKind::Descent);
        let x0 = DVector::from_vec(vec![300.0, -200.0, 1500.0, 10.0, 5.0, -40.0, 1905.0]);
        for with_policy in [true, false] {
            let mut cfg = ControllerConfig::default();
            cfg.terminal_correction.enabled = false;
            cfg.terminal_correction.retime_with_policy = with_policy;
            let mut m = DescentMission::new(&p, &cfg).unwrap();
            let xt = start(&mut m, &GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go: 0.0 });
            let aim = m.aim(&xt);
            let mut solver = solvers::for_problem(&p, SolverSettings::default()).unwrap();
            let sol = solver.solve(&Instance { x0: x0.clone(), x_target: aim.clone(), t_go: None }).unwrap();
            let t_go = sol.t_go - 2.0;
            let in_loop = Simulator::new(&p).unwrap();
            let before = residual(&in_loop, &x0, &aim, &sol.u, t_go / 50.0);
            let mut asked = Vec::new();
            let mut replan = |tg: f64| {
                asked.push(tg);
                solver.solve(&Instance { x0: x0.clone(), x_target: aim.clone(), t_go: Some(tg) }).ok().map(|s| s.u)
            };
            let f = m.finish(100.0, &x0, &aim, t_go, sol.u.clone(), Instant::now() + std::time::Duration::from_secs(30), &mut replan);
            let after = residual(&in_loop, &x0, &aim, &f.u, f.t_go / 50.0);
            if with_policy {
                let moved = f.retimed_s.expect("the landing time moves");
                assert!(before > 1.0 && after <= cfg.terminal_correction.retime_threshold, "miss {before} -> {after}");
                assert!(moved > 0.0 && (f.t_go - t_go - moved).abs() < 1e-12 && !asked.is_empty());
                assert_eq!(m.landing_time(), Some(100.0 + f.t_go));
                assert_eq!(f.correction_steps, 0, "no Gauss-Newton step: every candidate is the policy's");
            } else {
                assert!(f.retimed_s.is_none() && asked.is_empty() && f.u == sol.u && f.t_go == t_go);
            }
        }
    }

    #[test]
    fn finish_lands_a_perturbed_optimum_in_the_plant_model() {
        let (mut m, p) = setup();
        let x0 = DVector::from_vec(vec![300.0, -200.0, 1500.0, 10.0, 5.0, -40.0, 1905.0]);
        let xt = start(&mut m, &GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go: 0.0 });
        let aim = m.aim(&xt);
        let mut solver = solvers::for_problem(&p, SolverSettings::default()).unwrap();
        let sol = solver.solve(&Instance { x0: x0.clone(), x_target: aim.clone(), t_go: None }).unwrap();
        let u = sol.u.map(|v| v * 1.01);
        let plant = Simulator::Rk4(p.build().unwrap());
        let before = residual(&plant, &x0, &aim, &u, sol.t_go / 50.0);
        let f = m.finish(100.0, &x0, &aim, sol.t_go, u, Instant::now() + std::time::Duration::from_secs(5), &mut |_| None);
        let after = residual(&plant, &x0, &aim, &f.u, f.t_go / 50.0);
        assert!(before > 1.0 && after < 0.01, "terminal miss in tolerance units: {before} -> {after}");
    }

    /// How deep [m] a plan's rollout in the plant model passes under the site's glide-slope cone
    /// at nodes more than 10 m above the site (0 when it never does).
    fn under_cone(p: &ProblemConfig, x0: &DVector<f64>, u: &DMatrix<f64>, dt: f64) -> f64 {
        let traj = Simulator::Rk4(p.build().unwrap()).rollout_one(x0, u, dt).unwrap();
        let tan = p.descent.glide_slope_deg.to_radians().tan();
        (1..traj.nrows() - 1).filter(|&k| traj[(k, 2)] > 10.0).map(|k| tan * traj[(k, 0)].hypot(traj[(k, 1)]) - traj[(k, 2)]).fold(0.0, f64::max)
    }

    #[test]
    fn a_plan_under_the_glide_slope_is_replaced_by_the_lcvx_fallback() {
        // seed 17 episode 32's first state (1,490 m off to the side at 1,585 m): the ZEM/ZEV plan
        // corrected onto the aim point passes ~60 m under the cone
        let (mut m, p) = setup();
        let x0 = DVector::from_vec(vec![-204.9, -1471.9, 1584.8, -22.46, -28.80, -79.11, 1905.0]);
        let xt = start(&mut m, &GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go: 47.01 });
        let aim = m.aim(&xt);
        let t_go = 47.01;
        let u = crate::baseline::zem_zev_plan(&m.problem, &x0, &aim, t_go, 50);
        let dt = t_go / 50.0;
        let (uc, _) = m.corrector.correct_full_range(&x0, &aim, &u, dt, None);
        let depth_terminal_only = under_cone(&p, &x0, &uc, dt);
        let f = m.finish(100.0, &x0, &aim, t_go, u, Instant::now() + std::time::Duration::from_secs(5), &mut |_| None);
        let plant = Simulator::Rk4(p.build().unwrap());
        let depth = under_cone(&p, &x0, &f.u, f.t_go / 50.0);
        assert!(depth_terminal_only > 10.0, "the case must pass under the cone without the fallback ({depth_terminal_only} m)");
        assert!(depth < 0.5, "finished plan passes {depth} m under the cone (terminal correction alone: {depth_terminal_only} m)");
        assert!(residual(&plant, &x0, &aim, &f.u, f.t_go / 50.0) < 0.5);
    }
}
