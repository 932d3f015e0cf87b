//! The receding-horizon controller (ROS-free): warm start, shift, deadline, anytime, guards.
//!
//! Each cycle ([`RecedingHorizon::step`]) answers one state:
//!
//! 1. **Guards** (in order): the policy could not be loaded or does not match the problem; no
//!    goal yet; wrong state dimension; NaN/inf in the state; stale state (`now - stamp >
//!    max_state_age_s`). Any of these gives status FAILED with the problem's safe command
//!    ([`RecedingHorizon::safe_command`]) and a [`Rejected`] reason for the log; the last good
//!    solution is kept for the next cycle.
//! 2. **Time-to-go.** Van der Pol and the double integrator: a receding horizon of fixed length,
//!    `t_go = N dt`. Descent: a shrinking horizon, `t_go = t_land - stamp`, with
//!    `t_land = goal stamp + goal t_go` (a goal with `t_go = 0` lets the controller choose: the
//!    minimum-fuel t_f of LCvx from the first state, solved once). In the **terminal phase**
//!    (`t_go <= terminal_phase_s`, default 3 s) the controller stops running the network (trained
//!    on t_go >= 10% of t_f) and follows the last refined plan, resampled once to the state's
//!    time and re-corrected from the measured state (status FALLBACK_SHIFTED with 0 iterations,
//!    counted as `terminal`). Descent plans aim at the **touchdown gate**
//!    ([`ControllerConfig::gate_altitude_m`]) and, from `t_land`, the vehicle sinks at the gate's
//!    constant rate until touchdown (counted `terminal`); without a gate, cycles after `t_land`
//!    are FAILED ([`Rejected::PastLandingTime`]) with the same sink as the safe command.
//! 2b. **Terminal correction** (descent, [`ControllerConfig::terminal_correction`]): every
//!    policy iterate (on the inference thread) and every shifted plan (here) goes through
//!    [`crate::model::terminal::correct`]; when the corrected plan still misses, the landing time
//!    may move ([`RecedingHorizon`] retiming, bounded per goal).
//! 3. **Warm start**: u^(0) = the previous plan shifted to this state's time ([`shift_controls`]).
//! 4. **Refine on the inference thread** and wait until the deadline (`deadline_s` after the
//!    cycle starts): all K iterates in time -> CONVERGED; deadline hit with iterate k >= 1
//!    finished -> ANYTIME (the newest finished iterate); nothing in time -> FALLBACK_SHIFTED (the
//!    previous plan shifted); no previous plan -> FAILED with the safe command. An iterate of
//!    the previous cycle's job that finishes after its deadline is adopted as the previous plan
//!    (so a controller that starts overloaded still gets a plan to shift).
//!
//! The predicted states of every plan are rolled out from the answered state through the
//! problem's RK4 dynamics (f64), and its cost J is the problem's cost of that rollout. The
//! command to send is [`RecedingHorizon::command`]: the plan's mean control over the actuation
//! period `command_hold_s`, projected.

use std::time::Instant;

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::policy::PlanRequest;
use super::worker::{InferenceWorker, WorkerEvent};
use crate::config::{non_negative, positive, ProblemConfig, ProblemKind};
use crate::error::ConfigError;
use crate::model::terminal::{correct, residual, CorrectionModel, CorrectionReport, TerminalCorrection};
use crate::model::trc::Simulator;
use crate::plan::{Plan, PlanStatus};
use crate::problems::Problem;
use crate::solvers::{self, Instance, SolverSettings};

/// Controller settings (node parameters `controller.*`; all may change at run time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Deadline per cycle [s], from the cycle's start to the answer. Default 0.05.
    pub deadline_s: f64,
    /// Largest accepted age of a state, `now - stamp` [s]. Default 0.5.
    pub max_state_age_s: f64,
    /// Descent: follow the last plan when `t_go` is at most this [s]. Default 3.0.
    pub terminal_phase_s: f64,
    /// Outer iterations K at inference (0 = the K the model was trained with). Default 0.
    pub outer: u32,
    /// Warm start: refine from the shifted previous plan (true) or from the policy's own initial
    /// guess (false; TRC: the InitialDecoder). The shifted plan is the fallback either way.
    /// Default false: the shipped models were trained from the InitialDecoder only, and
    /// warm-starting them flew worse in closed loop (3 descent episodes, tiny model: median
    /// touchdown miss 1028 m warm vs 77 m cold).
    pub warm_start: bool,
    /// How long the vehicle holds each command [s] (its actuation period; normally the state
    /// rate's period). The published command is the plan's time-weighted mean control over this
    /// window, projected onto the admissible set ([`RecedingHorizon::command`]): when the plan's
    /// step `dt = t_go / N` is shorter than the hold (descent's last `N x hold` seconds) the
    /// first control alone would be held for several plan steps; the mean keeps the planned
    /// impulse. 0 = the first control `u_0`. Default 0.1 (10 Hz).
    pub command_hold_s: f64,
    /// Terminal correction ([`crate::model::terminal`]): applied by the policy to every TRC
    /// iterate, and by the controller to the shifted plan it follows in the terminal phase and
    /// in a FALLBACK_SHIFTED cycle (descent; the identity for problems without a terminal
    /// equality). Default enabled, in the plant model.
    pub terminal_correction: TerminalCorrection,
    /// Descent touchdown gate: the plan aims `gate_altitude_m` above the landing site with a
    /// vertical speed of `-gate_sink_rate_mps` at t_land, and from t_land the vehicle descends
    /// upright at that constant sink rate until touchdown (the constant-velocity terminal descent
    /// of flown landers). A plan that decelerates to exactly zero speed at the ground touches
    /// down at `sqrt(2 a dz)` for an altitude error `dz` (0.9 m/s for 10 cm at 4 m/s^2); the
    /// gate makes the touchdown speed the sink rate instead. 0 = aim at the ground. Default 1.0
    /// (20 seeded episodes with disturbances: 0.5 m / 0.3 m/s landed 50%, 1.0 m / 0.4 m/s 75%).
    pub gate_altitude_m: f64,
    /// Sink rate of the terminal descent below the gate [m/s] (> 0 when the gate is on).
    /// Default 0.35 (below the 0.5 m/s success speed with margin for thrust errors).
    pub gate_sink_rate_mps: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self { deadline_s: 0.05, max_state_age_s: 0.5, terminal_phase_s: 3.0, outer: 0, warm_start: false, command_hold_s: 0.1, terminal_correction: TerminalCorrection::default(), gate_altitude_m: 1.0, gate_sink_rate_mps: 0.35 }
    }
}

impl ControllerConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("controller.deadline_s", self.deadline_s)?;
        if self.deadline_s > 10.0 {
            return Err(ConfigError::invalid("controller.deadline_s", "must be at most 10 s"));
        }
        positive("controller.max_state_age_s", self.max_state_age_s)?;
        non_negative("controller.terminal_phase_s", self.terminal_phase_s)?;
        non_negative("controller.command_hold_s", self.command_hold_s)?;
        if self.command_hold_s > 10.0 {
            return Err(ConfigError::invalid("controller.command_hold_s", "must be at most 10 s"));
        }
        non_negative("controller.gate_altitude_m", self.gate_altitude_m)?;
        if self.gate_altitude_m > 0.0 {
            positive("controller.gate_sink_rate_mps", self.gate_sink_rate_mps)?;
        }
        if self.gate_altitude_m > 100.0 {
            return Err(ConfigError::invalid("controller.gate_altitude_m", format!("must be <= 100 m, got {}", self.gate_altitude_m)));
        }
        non_negative("controller.gate_sink_rate_mps", self.gate_sink_rate_mps)?;
        if self.gate_sink_rate_mps > 10.0 {
            return Err(ConfigError::invalid("controller.gate_sink_rate_mps", format!("must be <= 10 m/s, got {}", self.gate_sink_rate_mps)));
        }
        self.terminal_correction.validate("controller.terminal_correction")
    }
}

/// A state estimate handed to the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInput {
    /// Time the state is valid [s] (ROS time).
    pub stamp: f64,
    /// Frame of the state.
    pub frame_id: String,
    /// State x, length n, problem units.
    pub x: Vec<f64>,
}

/// A goal handed to the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalInput {
    /// Time the goal was issued [s] (0: "from the first state").
    pub stamp: f64,
    /// Target state, length n (descent: the mass entry is ignored).
    pub x_target: Vec<f64>,
    /// Time-to-go [s] at `stamp`; 0 = the controller chooses.
    pub t_go: f64,
}

/// Why an input was rejected (each is logged by the node; the last good plan is kept).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum Rejected {
    /// The policy is unusable (load failure, model/problem mismatch).
    #[error("no usable policy: {0} (fix the model parameter; publishing the safe command)")]
    NoPolicy(String),
    /// No goal received yet.
    #[error("no goal received yet: publish a Goal on `goal` (transient-local); publishing the safe command")]
    NoGoal,
    /// Wrong state dimension.
    #[error("{what} has {got} entries, the {problem} problem needs n = {want}; input ignored")]
    WrongDimension {
        /// `state` or `goal`.
        what: &'static str,
        /// Entries received.
        got: usize,
        /// Entries needed.
        want: usize,
        /// Problem name.
        problem: String,
    },
    /// NaN or infinite entry.
    #[error("{what}[{index}] is {value}; input ignored")]
    NonFinite {
        /// `state` or `goal`.
        what: &'static str,
        /// Index of the first bad entry.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A value outside its physical range.
    #[error("{what} = {value} is outside {range}; input ignored")]
    OutOfRange {
        /// The entry.
        what: &'static str,
        /// The value.
        value: f64,
        /// The accepted range.
        range: String,
    },
    /// The state is too old (or stamped in the future, or the clock is not running yet).
    #[error("stale state: {age_s:.3} s old, more than max_state_age_s = {max_s} s from now (check the estimator, clocks and use_sim_time)")]
    Stale {
        /// Age [s].
        age_s: f64,
        /// Limit [s].
        max_s: f64,
    },
    /// Descent: the landing time has passed without touchdown.
    #[error("landing time passed {late_s:.2} s ago without touchdown; commanding the touchdown thrust")]
    PastLandingTime {
        /// Seconds past t_land.
        late_s: f64,
    },
    /// The controller could not choose t_go.
    #[error("cannot choose t_go from this state: {0}")]
    NoTimeToGo(String),
}

/// Outcome of one cycle.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    /// The plan to publish (always finite).
    pub plan: Plan,
    /// Why the input was rejected, if it was (status FAILED).
    pub rejected: Option<Rejected>,
    /// The policy's error, if it failed this cycle.
    pub policy_error: Option<String>,
    /// The answer came after the deadline (more than 1 ms late).
    pub late: bool,
    /// Descent terminal phase (last plan followed).
    pub terminal: bool,
}

/// Counters since start (the node's diagnostics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Cycles run.
    pub cycles: u64,
    /// Per status: CONVERGED, ANYTIME, FALLBACK_SHIFTED (deadline), FAILED.
    pub converged: u64,
    /// See `converged`.
    pub anytime: u64,
    /// See `converged` (terminal-phase cycles are counted in `terminal` instead).
    pub fallback: u64,
    /// See `converged`.
    pub failed: u64,
    /// Descent terminal-phase cycles.
    pub terminal: u64,
    /// Descent cycles that moved the landing time ([`TerminalCorrection::max_retime_s`]).
    pub retimed: u64,
    /// Answers later than the deadline.
    pub late: u64,
    /// Solve times [ms] of the refined cycles (CONVERGED / ANYTIME / deadline fallback).
    pub solve_ms: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Goal {
    x_target: DVector<f64>,
    stamp: f64,
    t_go: f64,
    t_land: Option<f64>,
    /// Sum of |landing-time moves| so far [s] (bounded by `max_retime_s`).
    retimed_s: f64,
}

/// The receding-horizon controller.
#[derive(Debug)]
pub struct RecedingHorizon {
    problem_cfg: ProblemConfig,
    problem: Box<dyn Problem>,
    cfg: ControllerConfig,
    worker: Result<InferenceWorker, String>,
    goal: Option<Goal>,
    last: Option<Plan>,
    stats: Stats,
    /// The previous job (id, its state, t_go, goal target): an iterate of it that arrives after
    /// its deadline is still adopted as the last plan when it is newer than the one held.
    prev_job: Option<(u64, StateInput, f64, DVector<f64>)>,
    /// Descent terminal phase: the plan it follows (the last refined plan, kept unshifted so
    /// every terminal cycle resamples it once).
    terminal_ref: Option<Plan>,
    /// The problem in the plant model (RK4, zero-order hold) and in TRC's in-loop model, for the
    /// controller's own terminal corrections.
    plant_sim: Simulator,
    in_loop_sim: Option<Simulator>,
}

impl RecedingHorizon {
    /// A controller for `problem` driving the policy on `worker` (an `Err` is kept and reported
    /// as [`Rejected::NoPolicy`] every cycle, so a node with a bad model still answers).
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem or controller config.
    pub fn new(problem: &ProblemConfig, cfg: ControllerConfig, worker: Result<InferenceWorker, String>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let plant_sim = Simulator::Rk4(problem.build()?);
        let in_loop_sim = Simulator::new(problem).ok();
        Ok(Self { problem_cfg: problem.clone(), problem: problem.build()?, cfg, worker, goal: None, last: None, stats: Stats::default(), prev_job: None, terminal_ref: None, plant_sim, in_loop_sim })
    }

    /// Settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Replaces the settings (live parameter update).
    ///
    /// # Errors
    /// [`ConfigError`] (the old settings stay).
    pub fn set_config(&mut self, cfg: ControllerConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        self.cfg = cfg;
        Ok(())
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last good plan (CONVERGED, ANYTIME or shifted).
    pub fn last_plan(&self) -> Option<&Plan> {
        self.last.as_ref()
    }

    /// The policy's name, or the reason there is none.
    pub fn policy_name(&self) -> String {
        match &self.worker {
            Ok(w) => w.name().to_string(),
            Err(e) => format!("none ({e})"),
        }
    }

    /// Sets the goal. A new goal drops the last plan (it answered another target).
    ///
    /// # Errors
    /// [`Rejected`] for a wrong dimension or a NaN; the old goal stays.
    pub fn set_goal(&mut self, g: &GoalInput) -> Result<(), Rejected> {
        let n = self.problem.state_dim();
        if g.x_target.len() != n {
            return Err(Rejected::WrongDimension { what: "goal.x_target", got: g.x_target.len(), want: n, problem: self.problem_cfg.name.to_string() });
        }
        let check = if self.problem.kind() == ProblemKind::Descent { 6 } else { n };
        if let Some((i, v)) = g.x_target.iter().take(check).enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Rejected::NonFinite { what: "goal.x_target", index: i, value: *v });
        }
        if !g.t_go.is_finite() || g.t_go < 0.0 {
            return Err(Rejected::NonFinite { what: "goal.t_go", index: 0, value: g.t_go });
        }
        let mut xt = DVector::from_column_slice(&g.x_target);
        if self.problem.kind() == ProblemKind::Descent {
            xt[6] = self.problem_cfg.descent.m_dry;
        }
        if g.t_go > 1e4 {
            return Err(Rejected::OutOfRange { what: "goal.t_go", value: g.t_go, range: "[0, 1e4] s".into() });
        }
        let t_land = (g.t_go > 0.0 && g.stamp > 0.0).then(|| g.stamp + g.t_go);
        // a re-sent identical goal keeps the plan (and the terminal phase); a new one drops it
        let same = self.goal.as_ref().is_some_and(|o| o.x_target == xt && o.t_go == g.t_go && o.stamp == g.stamp);
        if !same {
            self.goal = Some(Goal { x_target: xt, stamp: g.stamp, t_go: g.t_go, t_land, retimed_s: 0.0 });
            self.last = None;
            self.prev_job = None;
            self.terminal_ref = None;
        }
        Ok(())
    }

    /// Descent landing time t_land [s], once known.
    pub fn landing_time(&self) -> Option<f64> {
        self.goal.as_ref().and_then(|g| g.t_land)
    }

    /// The safe command of each problem, `[m]`:
    /// - descent: with a previous plan, its continuation at `stamp` (the safest thing a lander
    ///   can do with a bad input is keep flying the last good plan); without one, or after the
    ///   landing time, a sink: vertical thrust `m (|g| + (-s - v_z) / 1 s)`, `s` the gate's sink
    ///   rate (1 m/s without a gate), horizontal thrust `m (-v_xy / 1 s - 0.25 (r_xy - r_t) /
    ///   s^2)`, projected onto the thrust annulus and pointing cone; without a valid state
    ///   `0.95 m_wet |g|` upright;
    /// - Van der Pol, double integrator: `u = 0`.
    pub fn safe_command(&self, x: Option<&DVector<f64>>, stamp: f64, past_landing: bool) -> DVector<f64> {
        match self.problem.kind() {
            ProblemKind::Descent => {
                if let (Some(last), false) = (&self.last, past_landing) {
                    let k = (((stamp - last.stamp) / last.dt).floor().max(0.0) as usize).min(last.u.nrows().saturating_sub(1));
                    return last.u.row(k).transpose();
                }
                let p = &self.problem_cfg.descent;
                let m = x.map(|x| x[6]).filter(|m| m.is_finite() && *m > 0.0).unwrap_or(p.m_wet);
                let g = DVector::from_column_slice(&p.gravity).norm();
                // upright sink towards v_z = -sink (the gate's sink rate, else 1 m/s; gain 1/s);
                // without a velocity, 0.95 of the weight
                let sink = if self.cfg.gate_altitude_m > 0.0 { self.cfg.gate_sink_rate_mps } else { 1.0 };
                let a = x.map(|x| g + (-sink - x[5])).unwrap_or(0.95 * g).max(0.0);
                // horizontal: damp the velocity (1/s) and pull towards the site (0.25/s^2), with
                // vertical priority (tilt at most 90% of the pointing limit)
                let (ax, ay) = match (x, &self.goal) {
                    (Some(x), Some(goal)) => (-x[3] - 0.25 * (x[0] - goal.x_target[0]), -x[4] - 0.25 * (x[1] - goal.x_target[1])),
                    (Some(x), None) => (-x[3], -x[4]),
                    _ => (0.0, 0.0),
                };
                let h_max = a * (0.9 * p.pointing_max_deg.to_radians()).min(1.5).tan();
                let h = (ax * ax + ay * ay).sqrt();
                let (ax, ay) = if h > h_max && h > 0.0 { (ax * h_max / h, ay * h_max / h) } else { (ax, ay) };
                let (ax, ay) = if ax.is_finite() && ay.is_finite() { (ax, ay) } else { (0.0, 0.0) };
                let t = DMatrix::from_row_slice(1, 3, &[ax * m, ay * m, a * m]);
                crate::model::terminal::project_rows(&t, &self.problem.control_constraint()).row(0).transpose()
            }
            _ => DVector::zeros(self.problem.control_dim()),
        }
    }

    fn validate_state(&self, s: &StateInput, now: f64) -> Result<(DVector<f64>, Goal), Rejected> {
        if let Err(e) = &self.worker {
            return Err(Rejected::NoPolicy(e.clone()));
        }
        let goal = self.goal.clone().ok_or(Rejected::NoGoal)?;
        let n = self.problem.state_dim();
        if s.x.len() != n {
            return Err(Rejected::WrongDimension { what: "state.x", got: s.x.len(), want: n, problem: self.problem_cfg.name.to_string() });
        }
        if let Some((i, v)) = s.x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Rejected::NonFinite { what: "state.x", index: i, value: *v });
        }
        if !s.stamp.is_finite() || (now - s.stamp).abs() > self.cfg.max_state_age_s {
            return Err(Rejected::Stale { age_s: now - s.stamp, max_s: self.cfg.max_state_age_s });
        }
        if self.problem.kind() == ProblemKind::Descent {
            let d = &self.problem_cfg.descent;
            if !(0.5 * d.m_dry..=1.5 * d.m_wet).contains(&s.x[6]) {
                return Err(Rejected::OutOfRange { what: "state.x[6] (mass)", value: s.x[6], range: format!("[{}, {}] kg", 0.5 * d.m_dry, 1.5 * d.m_wet) });
            }
        }
        Ok((DVector::from_column_slice(&s.x), goal))
    }

    /// The command to send now for `plan` (length m): its time-weighted mean control over
    /// `controller.command_hold_s` ([`Plan::mean_control`]), projected onto the admissible set
    /// (thrust annulus + pointing cone, or box). Always finite for a finite plan.
    pub fn command(&self, plan: &Plan) -> DVector<f64> {
        let u = plan.mean_control(self.cfg.command_hold_s);
        let row = DMatrix::from_row_slice(1, u.len(), u.as_slice());
        crate::model::terminal::project_rows(&row, &self.problem.control_constraint()).row(0).transpose()
    }

    /// Answers one state; `now` is the controller's clock [s] (ROS time; sim time under
    /// `use_sim_time`). Never fails: see the module docs for the statuses.
    pub fn step(&mut self, s: &StateInput, now: f64) -> CycleOutcome {
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_secs_f64(self.cfg.deadline_s);
        self.stats.cycles += 1;
        let (x, goal) = match self.validate_state(s, now) {
            Ok(v) => v,
            Err(r) => {
                let x = (s.x.len() == self.problem.state_dim() && s.x.iter().all(|v| v.is_finite())).then(|| DVector::from_column_slice(&s.x));
                return self.failed(s, x.as_ref(), r, start, false);
            }
        };
        let aim = self.aim(&goal.x_target);
        // time-to-go
        let t_go = if self.problem.kind() == ProblemKind::Descent {
            let t_land = match goal.t_land {
                Some(t) => t,
                None => {
                    let t = match self.choose_t_go(&x, &goal, &aim) {
                        Ok(t_go) => s.stamp + t_go,
                        Err(r) => return self.failed(s, Some(&x), r, start, false),
                    };
                    if let Some(g) = &mut self.goal {
                        g.t_land = Some(t);
                    }
                    t
                }
            };
            t_land - s.stamp
        } else {
            self.problem.default_t_go()
        };
        if t_go <= 0.0 {
            if self.problem.kind() == ProblemKind::Descent && self.cfg.gate_altitude_m > 0.0 {
                // below the gate: constant-sink terminal descent (planned, not a failure)
                let cmd = self.safe_command(Some(&x), s.stamp, true);
                let n_steps = self.problem.horizon();
                let u = DMatrix::from_fn(n_steps, cmd.len(), |_, j| cmd[j]);
                let t_sink = (self.cfg.gate_altitude_m / self.cfg.gate_sink_rate_mps).max(0.1);
                self.stats.terminal += 1;
                let plan = self.make_plan(s, &x, &goal.x_target, t_sink, u, PlanStatus::FallbackShifted, 0, start);
                self.last = Some(plan.clone());
                return CycleOutcome { late: self.is_late(start), plan, rejected: None, policy_error: None, terminal: true };
            }
            return self.failed(s, Some(&x), Rejected::PastLandingTime { late_s: -t_go }, start, true);
        }
        // the one-off t_f search (first descent state of a goal with t_go = 0) is not refinement:
        // the deadline counts from here
        let (start, deadline) = if start.elapsed().as_secs_f64() > 0.5 * self.cfg.deadline_s {
            let st = Instant::now();
            (st, st + std::time::Duration::from_secs_f64(self.cfg.deadline_s))
        } else {
            (start, deadline)
        };
        // stop waiting a little before the deadline: the shift, rollout and publication follow
        let wait_until = deadline - std::time::Duration::from_secs_f64((0.1 * self.cfg.deadline_s).min(2e-3));
        let shifted = self.last.as_ref().map(|last| shift_controls(last, s.stamp, t_go, self.problem.horizon()));
        if self.problem.kind() == ProblemKind::Descent && t_go <= self.cfg.terminal_phase_s {
            if self.terminal_ref.is_none() {
                self.terminal_ref = self.last.clone();
            }
            if let Some(reference) = &self.terminal_ref {
                let u = shift_controls(reference, s.stamp, t_go, self.problem.horizon());
                let u = self.corrected(&x, &aim, t_go, u, deadline);
                let (t_go, u) = self.retime(s.stamp, &x, &aim, t_go, u, deadline);
                self.stats.terminal += 1;
                let plan = self.make_plan(s, &x, &aim, t_go, u, PlanStatus::FallbackShifted, 0, start);
                self.last = Some(plan.clone());
                return CycleOutcome { late: self.is_late(start), plan, rejected: None, policy_error: None, terminal: true };
            }
        }
        self.terminal_ref = None;
        // refine on the inference thread until the deadline
        let worker = match self.worker.as_mut() {
            Ok(w) => w,
            Err(e) => {
                let r = Rejected::NoPolicy(e.clone());
                return self.failed(s, Some(&x), r, start, false);
            }
        };
        let k_full = worker.iterations();
        let u_warm = if self.cfg.warm_start { shifted.clone() } else { None };
        let id = worker.submit(PlanRequest { x0: x.clone(), x_target: aim.clone(), t_go, u_warm, correction: self.cfg.terminal_correction, deadline: Some(wait_until) }, deadline);
        let (mut best, mut converged, mut policy_error) = (None, false, None);
        let prev_job = self.prev_job.replace((id, s.clone(), t_go, aim.clone()));
        let mut late: Option<(StateInput, f64, DVector<f64>, super::Iterate)> = None;
        while let Some((jid, ev)) = worker.next_event(wait_until) {
            if jid != id {
                // a late iterate of the previous job: usable as the plan to shift from
                if let (WorkerEvent::Iterate(it), Some((pid, ps, pt, px))) = (ev, &prev_job) {
                    if jid == *pid {
                        late = Some((ps.clone(), *pt, px.clone(), it));
                    }
                }
                continue;
            }
            match ev {
                WorkerEvent::Iterate(it) if it.u.shape() != (self.problem.horizon(), self.problem.control_dim()) || it.u.iter().any(|v| !v.is_finite()) => {
                    policy_error = Some(format!("iterate {} has shape {:?} or a non-finite entry; ignored", it.k, it.u.shape()));
                    break;
                }
                WorkerEvent::Iterate(it) => {
                    converged = it.k >= k_full;
                    best = Some(it);
                    if converged {
                        break;
                    }
                }
                WorkerEvent::Done | WorkerEvent::Skipped => break,
                WorkerEvent::Failed(e) => {
                    policy_error = Some(e);
                    break;
                }
            }
        }
        let shifted = match (shifted, late) {
            (cur, Some((ps, pt, px, it))) if self.last.as_ref().is_none_or(|l| l.stamp < ps.stamp) => {
                let xp = DVector::from_column_slice(&ps.x);
                let adopted = self.make_plan(&ps, &xp, &px, pt, it.u, PlanStatus::Anytime, it.k, start);
                let u = shift_controls(&adopted, s.stamp, t_go, self.problem.horizon());
                self.last = Some(adopted);
                Some(u).or(cur)
            }
            (cur, _) => cur,
        };
        let (u, status, iters) = match (best, shifted) {
            (Some(it), _) => (it.u, if converged { PlanStatus::Converged } else { PlanStatus::Anytime }, it.k),
            (None, Some(u)) => (self.corrected(&x, &aim, t_go, u, deadline), PlanStatus::FallbackShifted, 0),
            (None, None) => {
                let r = Rejected::NoPolicy(policy_error.clone().unwrap_or_else(|| format!("no iterate within the {} s deadline and no previous plan", self.cfg.deadline_s)));
                let mut out = self.failed(s, Some(&x), r, start, false);
                out.policy_error = policy_error;
                return out;
            }
        };
        let (t_go, u) = self.retime(s.stamp, &x, &aim, t_go, u, deadline);
        let plan = self.make_plan(s, &x, &aim, t_go, u, status, iters, start);
        match status {
            PlanStatus::Converged => self.stats.converged += 1,
            PlanStatus::Anytime => self.stats.anytime += 1,
            _ => self.stats.fallback += 1,
        }
        push_bounded(&mut self.stats.solve_ms, plan.solve_time_ms);
        self.last = Some(plan.clone());
        CycleOutcome { late: self.is_late(start), plan, rejected: None, policy_error, terminal: false }
    }

    /// `u` through the terminal correction from `x` (controller settings; see
    /// [`ControllerConfig::terminal_correction`]).
    fn corrected(&self, x: &DVector<f64>, xt: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant) -> DMatrix<f64> {
        self.corrected_report(x, xt, t_go, u, deadline).0
    }

    /// [`RecedingHorizon::corrected`] with what the correction did (its residual is in the
    /// correction's own model; a default report when the correction is off or has no model).
    fn corrected_report(&self, x: &DVector<f64>, xt: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant) -> (DMatrix<f64>, CorrectionReport) {
        let tc = &self.cfg.terminal_correction;
        match self.correction_sim() {
            Some(sim) if tc.enabled => correct(sim, x, xt, &u, t_go / self.problem.horizon() as f64, tc, Some(deadline)),
            _ => (u, CorrectionReport::default()),
        }
    }

    /// The model the terminal correction aims in (`terminal_correction.model`).
    fn correction_sim(&self) -> Option<&Simulator> {
        match self.cfg.terminal_correction.model {
            CorrectionModel::Plant => Some(&self.plant_sim),
            CorrectionModel::InLoop => self.in_loop_sim.as_ref(),
        }
    }

    /// Descent landing-time adjustment: when `u`, corrected at the current `t_go`, still misses
    /// the target in the correction's model (default: the plant) by more than `retime_threshold`, tries moved landing times
    /// (see [`TerminalCorrection::max_retime_s`]) with the same controls stretched over the new
    /// horizon and corrected again; adopts the best if it at least halves the corrected miss,
    /// moving t_land. The sum of |moves| per goal stays within `max_retime_s`. Returns the
    /// (possibly new) `(t_go, u)`.
    fn retime(&mut self, stamp: f64, x: &DVector<f64>, xt: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant) -> (f64, DMatrix<f64>) {
        let tc = self.cfg.terminal_correction;
        if self.problem.kind() != ProblemKind::Descent || !tc.enabled || tc.max_retime_s <= 0.0 {
            return (t_go, u);
        }
        let Some(sim) = self.correction_sim() else { return (t_go, u) };
        if residual(sim, x, xt, &u, t_go / self.problem.horizon() as f64) <= tc.retime_threshold {
            return (t_go, u);
        }
        // the baseline is the plan corrected at the current t_go (a policy that does not correct,
        // or a correction cut short, must not make every moved time look better)
        let (u, rep) = self.corrected_report(x, xt, t_go, u, deadline);
        let r0 = rep.residual_after;
        if r0 <= tc.retime_threshold {
            return (t_go, u);
        }
        let moved = self.goal.as_ref().map_or(0.0, |g| g.retimed_s);
        let mut best: Option<(f64, f64, DMatrix<f64>)> = None;
        for delta in [0.25f64, 0.5, 1.0, 2.0, -0.25, -0.5] {
            if moved + delta.abs() > tc.max_retime_s || t_go + delta < 0.5 || Instant::now() >= deadline {
                continue;
            }
            let tg = t_go + delta;
            let (uc, rep) = self.corrected_report(x, xt, tg, u.clone(), deadline);
            let r = rep.residual_after;
            if best.as_ref().is_none_or(|b| r < b.0) {
                best = Some((r, tg, uc));
            }
            if r <= tc.retime_threshold {
                break;
            }
        }
        match best {
            Some((r, tg, uc)) if r < 0.5 * r0 => {
                if let Some(g) = &mut self.goal {
                    g.t_land = Some(stamp + tg);
                    g.retimed_s += (tg - t_go).abs();
                }
                self.stats.retimed += 1;
                log::info!("descent: landing time moved by {:+.2} s (predicted miss {:.3} -> {:.3} in tolerance units)", tg - t_go, r0, r);
                (tg, uc)
            }
            _ => (t_go, u),
        }
    }

    /// The state the plan aims at: the goal's target, raised to the touchdown gate for descent
    /// ([`ControllerConfig::gate_altitude_m`]).
    pub fn aim(&self, x_target: &DVector<f64>) -> DVector<f64> {
        let mut aim = x_target.clone();
        if self.problem.kind() == ProblemKind::Descent && self.cfg.gate_altitude_m > 0.0 {
            aim[2] += self.cfg.gate_altitude_m;
            aim[5] -= self.cfg.gate_sink_rate_mps;
        }
        aim
    }

    fn is_late(&mut self, start: Instant) -> bool {
        let late = start.elapsed().as_secs_f64() > self.cfg.deadline_s + 1e-3;
        if late {
            self.stats.late += 1;
        }
        late
    }

    fn choose_t_go(&self, x: &DVector<f64>, goal: &Goal, aim: &DVector<f64>) -> Result<f64, Rejected> {
        if goal.t_go > 0.0 {
            return Ok(goal.t_go);
        }
        let mut solver = solvers::for_problem(&self.problem_cfg, SolverSettings::default()).map_err(|e| Rejected::NoTimeToGo(e.to_string()))?;
        let sol = solver.solve(&Instance { x0: x.clone(), x_target: aim.clone(), t_go: None }).map_err(|e| Rejected::NoTimeToGo(e.to_string()))?;
        log::info!("t_go chosen by the LCvx minimum-fuel search: {:.2} s (goal stamp {:.3})", sol.t_go, goal.stamp);
        Ok(sol.t_go)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_plan(&self, s: &StateInput, x: &DVector<f64>, xt: &DVector<f64>, t_go: f64, u: DMatrix<f64>, status: PlanStatus, iterations: u32, start: Instant) -> Plan {
        let dt = t_go / self.problem.horizon() as f64;
        let xs = self.problem.rollout(x, &u, dt).ok().filter(|m| m.iter().all(|v| v.is_finite())).unwrap_or_else(|| DMatrix::zeros(u.nrows() + 1, x.len()));
        let cost = self.problem.cost(&xs, &u, xt, dt);
        Plan { stamp: s.stamp, frame_id: s.frame_id.clone(), dt, u, x: xs, cost: if cost.is_finite() { cost } else { f64::MAX }, status, iterations, solve_time_ms: start.elapsed().as_secs_f64() * 1e3 }
    }

    fn failed(&mut self, s: &StateInput, x: Option<&DVector<f64>>, r: Rejected, start: Instant, past_landing: bool) -> CycleOutcome {
        self.stats.failed += 1;
        let n_steps = self.problem.horizon();
        let cmd = self.safe_command(x, s.stamp, past_landing);
        let u = DMatrix::from_fn(n_steps, cmd.len(), |_, j| cmd[j]);
        let dt = self.problem.default_t_go() / n_steps as f64;
        let xs = match x {
            Some(x) => self.problem.rollout(x, &u, dt).unwrap_or_else(|_| DMatrix::zeros(n_steps + 1, self.problem.state_dim())),
            None => DMatrix::zeros(n_steps + 1, self.problem.state_dim()),
        };
        let xs = if xs.iter().all(|v| v.is_finite()) { xs } else { DMatrix::zeros(n_steps + 1, self.problem.state_dim()) };
        let stamp = if s.stamp.is_finite() { s.stamp } else { 0.0 };
        let plan = Plan { stamp, frame_id: s.frame_id.clone(), dt, u, x: xs, cost: 0.0, status: PlanStatus::Failed, iterations: 0, solve_time_ms: start.elapsed().as_secs_f64() * 1e3 };
        CycleOutcome { late: self.is_late(start), plan, rejected: Some(r), policy_error: None, terminal: false }
    }
}

fn push_bounded(v: &mut Vec<f64>, x: f64) {
    const KEEP: usize = 20_000;
    if v.len() >= KEEP {
        v.drain(..KEEP / 2);
    }
    v.push(x);
}

/// The previous plan shifted to `stamp`: `N` controls on the new grid `dt' = t_go / N`, control
/// j being the previous plan's control (zero-order hold) at time `stamp + (j + 1/2) dt'`, the last
/// control held beyond its end. With `dt' = dt` and `stamp = prev.stamp + dt` this is the
/// classic shift by one step with the last control repeated. `[N, m]`.
pub fn shift_controls(prev: &Plan, stamp: f64, t_go: f64, horizon: usize) -> DMatrix<f64> {
    let dt_new = t_go / horizon as f64;
    let last = prev.u.nrows().saturating_sub(1);
    DMatrix::from_fn(horizon, prev.u.ncols(), |j, c| {
        // sampled at the middle of the new step: robust to stamp jitter when the control period
        // is a whole number of plan steps
        let t = stamp - prev.stamp + (j as f64 + 0.5) * dt_new;
        let k = (t / prev.dt).floor().max(0.0) as usize;
        prev.u[(k.min(last), c)]
    })
}
