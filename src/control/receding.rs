//! The receding-horizon controller (ROS-free): one generic cycle for every problem; what is
//! specific to a task lives in its [`Mission`].
//!
//! Each cycle ([`RecedingHorizon::step`]) answers one state:
//!
//! 1. **Guards** (in order): the policy could not be loaded or does not match the problem; no
//!    goal yet; wrong state dimension; NaN/inf in the state; stale state (`|now - stamp| >
//!    max_state_age_s`); the mission's plausibility check ([`Mission::check_state`]). Any of
//!    these gives status FAILED with the mission's safe command and a [`Rejected`] reason for the
//!    log; the last good plan is kept for the next cycle.
//! 2. **Time-to-go and phase** from the mission ([`Mission::t_go`], [`Mission::phase`]): a
//!    fixed horizon `N dt`, or descent's shrinking horizon towards the landing time.
//! 3. **Candidate**: in [`Phase::Refine`], the policy refines on the inference thread until the
//!    deadline (`deadline_s` after the cycle starts): all K iterates in time -> CONVERGED; the
//!    deadline hit with iterate k >= 1 finished -> ANYTIME (the newest iterate); nothing in time
//!    -> FALLBACK_SHIFTED (the previous plan shifted to this state's time, [`shift_controls`];
//!    with no previous plan, the mission's fast first plan [`Mission::first_plan`], descent's
//!    ZEM/ZEV plan); neither -> FAILED with the safe command. An iterate of the previous cycle's job
//!    that finishes after its deadline is adopted as the previous plan (so a controller that
//!    starts overloaded still gets a plan to shift). In [`Phase::FollowReference`] the candidate
//!    is the last refined plan resampled to the state's time (TERMINAL); in
//!    [`Phase::FinalDescent`] the mission's final-descent command (TERMINAL, not finished).
//! 4. **One finish** ([`Mission::finish`]; descent: terminal correction and landing-time
//!    retiming; Van der Pol and the double integrator: the cost refinement) turns the candidate
//!    into the plan.
//!
//! **Warm start** (`controller.warm_start`): u^(0) = the previous plan shifted to this state's
//! time, else the policy's own initial guess. The predicted states of every plan are rolled out
//! from the answered state through the problem's RK4 dynamics (f64), and its cost J is the
//! problem's cost of that rollout. The command to send is [`RecedingHorizon::command`]: the
//! plan's mean control over the actuation period `command_hold_s`, projected.

use std::path::Path;
use std::time::{Duration, Instant};

use nalgebra::{DMatrix, DVector};

use super::io::{CycleOutcome, GoalInput, Rejected, StateInput, Stats};
use super::mission::{mission_for, Mission, Phase};
use super::policy::{policy_from_config, Iterate, PlanRequest, Policy, PolicyError};
use super::worker::{InferenceWorker, WorkerEvent};
use crate::config::{ControllerConfig, ProblemConfig, TrcConfig};
use crate::error::ConfigError;
use crate::plan::{hold, zoh_index, Plan, PlanStatus};
use crate::problems::{project_one, Problem};

/// The goal in force: its normalised target and what identifies it.
#[derive(Debug, Clone, PartialEq)]
struct Goal {
    x_target: DVector<f64>,
    stamp: f64,
    t_go: f64,
}

/// The previous cycle's job: an iterate of it that arrives after its deadline is still adopted as
/// the last plan when it is newer than the one held.
#[derive(Debug, Clone)]
struct Job {
    id: u64,
    state: StateInput,
    t_go: f64,
}

/// Controls `u` `[N, m]` computed for the state at `stamp` [s] with step `dt` [s]: what a
/// FALLBACK_SHIFTED answer resamples.
#[derive(Debug, Clone)]
struct Source {
    stamp: f64,
    dt: f64,
    u: DMatrix<f64>,
}

/// Jobs whose late iterates are still adopted (see `RecedingHorizon::pending`).
const PENDING_JOBS: usize = 8;

/// The receding-horizon controller.
#[derive(Debug)]
pub struct RecedingHorizon {
    problem_cfg: ProblemConfig,
    problem: Box<dyn Problem>,
    cfg: ControllerConfig,
    mission: Box<dyn Mission>,
    worker: Result<InferenceWorker, String>,
    goal: Option<Goal>,
    last: Option<Plan>,
    stats: Stats,
    /// The most recent jobs (up to [`PENDING_JOBS`]): a late iterate of any of them is usable as
    /// the plan to shift from, so an inference slower than two deadlines is still adopted when
    /// it finishes instead of being started again on every state (livelock).
    pending: std::collections::VecDeque<Job>,
    /// [`Phase::FollowReference`]: the plan it follows (the last refined plan, kept unshifted so
    /// every terminal cycle resamples it once).
    reference: Option<Plan>,
    /// The last answered plan that is not itself a shift (refined, or terminal): what
    /// FALLBACK_SHIFTED resamples, once. A run of missed deadlines must not resample a resampled
    /// plan: with a shrinking horizon (descent) each resampling moves the controls by up to half
    /// a step, and the errors add up (measured: a 0.1-unit plan grew a 20-unit miss per 0.4 s).
    fresh: Option<Source>,
    /// Running mean of the time [s] [`Mission::finish`] takes (exponential, weight 0.1): the
    /// wait for iterates ends early enough to leave it. `None` until the first finish.
    finish_s: Option<f64>,
    /// The command of the previous answer ([`RecedingHorizon::command`]), for the mission's
    /// [`Mission::observe`].
    sent: Option<DVector<f64>>,
    /// How the cycle in progress is timed ([`RecedingHorizon::step_timed`]); `Live` otherwise.
    timing: ReplayTiming,
    /// A state was refused as out of order since the goal was set: the next goal, even an
    /// identical one, starts afresh (a clock reset, a bag played in a loop).
    out_of_order: bool,
    /// When the last new goal was taken, on the controller's clock [s] (the goal rate limit).
    new_goal_at: Option<f64>,
    /// The newest goal refused by the rate limit, taken once the interval has passed.
    held_goal: Option<GoalInput>,
}

/// How a replayed cycle is timed (`trc replay --deadline recorded`, [`crate::bag::replay`]):
/// the recorded node's deadline outcome imposed on the replay, so a replay does not depend on
/// how fast the machine replaying it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayTiming {
    /// The normal cycle: iterates until `controller.deadline_s`.
    #[default]
    Live,
    /// The recorded answer was FALLBACK_SHIFTED: no inference is started; the previous plan is
    /// shifted (the mission's first plan before any).
    Missed,
    /// The recorded answer was ANYTIME with this many iterations: iterate `k` is taken (the rest
    /// of that job is not adopted later).
    Iterations(u32),
    /// The recorded answer was FAILED: a state the guards accept is refused all the same
    /// ([`Rejected::RecordedRefusal`]).
    Refused,
}

impl RecedingHorizon {
    /// The controller a config asks for: the problem's mission, the policy of `node.*` (loaded and
    /// warmed up on its inference thread; relative model paths are tried from the working
    /// directory, then from `package_root`), `controller.*`. The one constructor of the node, the
    /// CLI, the benchmarks and the tests. A policy that cannot be loaded is logged and kept as
    /// the reason of [`Rejected::NoPolicy`] every cycle, so a node with a bad model still answers.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem or controller config.
    pub fn from_config(cfg: &TrcConfig, package_root: Option<&Path>) -> Result<Self, ConfigError> {
        cfg.controller.validate()?;
        cfg.problem.validate()?;
        let (pcfg, root) = (cfg.clone(), package_root.map(Path::to_path_buf));
        let started = Instant::now();
        let worker = InferenceWorker::spawn(move || policy_from_config(&pcfg, root.as_deref())).map_err(|e| e.to_string());
        match &worker {
            Ok(w) => log::info!("policy {} ready after {:.2} s (K = {})", w.name(), started.elapsed().as_secs_f64(), w.iterations()),
            Err(e) => log::error!("no usable policy: {e}; every state is answered FAILED with the safe command"),
        }
        Self::new(&cfg.problem, cfg.controller.clone(), worker)
    }

    /// A controller driving the policy that `make` builds on a new inference thread (tests and
    /// tools with their own policy; see [`RecedingHorizon::from_config`]).
    ///
    /// # Errors
    /// As [`RecedingHorizon::new`].
    pub fn with_policy<P, F>(problem: &ProblemConfig, cfg: ControllerConfig, make: F) -> Result<Self, ConfigError>
    where
        P: Policy + 'static,
        F: FnOnce() -> Result<P, PolicyError> + Send + 'static,
    {
        Self::new(problem, cfg, InferenceWorker::spawn(make).map_err(|e| e.to_string()))
    }

    /// A controller for `problem` driving the policy on `worker` (an `Err` is kept and reported
    /// as [`Rejected::NoPolicy`] every cycle).
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem or controller config.
    pub fn new(problem: &ProblemConfig, cfg: ControllerConfig, worker: Result<InferenceWorker, String>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mission = mission_for(problem, &cfg)?;
        Ok(Self {
            problem_cfg: problem.clone(),
            problem: problem.build()?,
            cfg,
            mission,
            worker,
            goal: None,
            last: None,
            stats: Stats::default(),
            pending: Default::default(),
            reference: None,
            fresh: None,
            finish_s: None,
            sent: None,
            timing: ReplayTiming::Live,
            out_of_order: false,
            new_goal_at: None,
            held_goal: None,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Replaces the settings (live parameter update).
    ///
    /// # Errors
    /// [`ConfigError`] (the old settings stay).
    pub fn set_config(&mut self, cfg: ControllerConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        self.mission.set_config(&cfg);
        self.cfg = cfg;
        Ok(())
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last good plan (CONVERGED, ANYTIME, shifted or terminal).
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

    /// The policy is loaded and matches the problem.
    pub fn has_policy(&self) -> bool {
        self.worker.is_ok()
    }

    /// Runs `passes` full refinements of a representative request (a validation-split state of
    /// the problem to its default target and t_go) on the inference thread and waits for each,
    /// up to `timeout` in all: the managed node's activate, so that the first answer finds the
    /// kernels and the allocator warm. Call it between cycles (no job of `step` pending).
    /// Returns the last pass's wall time [ms], or `None` without a policy or when no pass
    /// finished in time.
    pub fn warm_up(&mut self, passes: u32, timeout: std::time::Duration) -> Option<f64> {
        let worker = self.worker.as_mut().ok()?;
        let inst = crate::data::sample_instance(&self.problem_cfg, 0, crate::data::Split::Val, 0);
        let (target, t_go) = (self.problem.default_target(), self.problem.default_t_go());
        let until = Instant::now() + timeout;
        let mut last = None;
        for _ in 0..passes {
            let t = Instant::now();
            worker_plan(worker, &inst.x0, &target, t_go, until)?;
            last = Some(t.elapsed().as_secs_f64() * 1e3);
        }
        last
    }

    /// Sets the goal. A new goal drops the last plan (it answered another target); a re-sent
    /// identical goal keeps it (and the terminal phase).
    ///
    /// # Errors
    /// [`Rejected`] for a wrong dimension, a NaN or an out-of-range value, another frame than
    /// `controller.plausibility.frame_id`; the old goal stays.
    pub fn set_goal(&mut self, g: &GoalInput) -> Result<(), Rejected> {
        self.set_goal_at(g, None)
    }

    /// [`Self::set_goal`] received at `now` [s] on the controller's clock: a goal stamped more
    /// than `controller.plausibility.max_goal_lead_s` ahead of it is refused too
    /// ([`Rejected::FutureGoal`]); `None` skips that check (a goal without a clock to compare).
    ///
    /// # Errors
    /// As [`Self::set_goal`], and [`Rejected::FutureGoal`].
    pub fn set_goal_at(&mut self, g: &GoalInput, now: Option<f64>) -> Result<(), Rejected> {
        let p = &self.cfg.plausibility;
        if !p.frame_id.is_empty() && g.frame_id != p.frame_id {
            return Err(Rejected::WrongFrame { what: "goal", got: g.frame_id.clone(), want: p.frame_id.clone() });
        }
        if let Some(now) = now.filter(|&t| t > 0.0 && g.stamp > 0.0) {
            if g.stamp - now > p.max_goal_lead_s {
                return Err(Rejected::FutureGoal { lead_s: g.stamp - now, max_s: p.max_goal_lead_s });
            }
        }
        let n = self.problem.state_dim();
        if g.x_target.len() != n {
            return Err(Rejected::WrongDimension { what: "goal.x_target", got: g.x_target.len(), want: n, problem: self.problem_cfg.name.to_string() });
        }
        let goal = Goal { x_target: self.mission.check_goal(g)?, stamp: g.stamp, t_go: g.t_go };
        if self.goal.as_ref() != Some(&goal) || self.out_of_order {
            // a new target drops the plan: a sender that changes it faster than this would keep
            // the vehicle without one. Not limited: the same target and t_go with a new stamp
            // (a restart of the goal's clock, as trc_sim sends after its handshake). A limited
            // goal is held, the newest one, and taken by the first state after the interval.
            let restart = self.goal.as_ref().is_some_and(|c| c.x_target == goal.x_target && c.t_go == goal.t_go);
            if let (Some(now), Some(at), false) = (now, self.new_goal_at, restart) {
                let min_s = self.cfg.plausibility.min_goal_interval_s;
                if now >= at && now - at < min_s {
                    self.held_goal = Some(g.clone());
                    return Err(Rejected::GoalRateLimited { since_s: now - at, min_s });
                }
            }
            self.held_goal = None;
            if !restart {
                self.new_goal_at = now;
            }
            self.out_of_order = false;
            self.mission.start_goal(g);
            self.goal = Some(goal);
            self.last = None;
            self.pending.clear();
            self.reference = None;
            self.fresh = None;
            self.sent = None;
        }
        Ok(())
    }

    /// Forgets the goal, the last plan and the previous job (a new episode: a goal equal to the
    /// previous one is then not taken for a re-send). The counters stay.
    pub fn reset(&mut self) {
        self.goal = None;
        self.new_goal_at = None;
        self.held_goal = None;
        self.last = None;
        self.pending.clear();
        self.reference = None;
        self.fresh = None;
        self.sent = None;
    }

    /// The current goal's target as checked (descent: the mass entry set to the dry mass), `[n]`.
    pub fn goal_target(&self) -> Option<&DVector<f64>> {
        self.goal.as_ref().map(|g| &g.x_target)
    }

    /// Descent landing time t_land [s], once known.
    pub fn landing_time(&self) -> Option<f64> {
        self.mission.landing_time()
    }

    /// The state the plans aim at for the goal's target (see [`Mission::aim`]).
    pub fn aim(&self, x_target: &DVector<f64>) -> DVector<f64> {
        self.mission.aim(x_target)
    }

    /// The command to send now for `plan` (length m): its time-weighted mean control over
    /// `controller.command_hold_s` ([`Plan::mean_control`]), projected onto the admissible set
    /// (thrust annulus + pointing cone, or box). Always finite for a finite plan.
    pub fn command(&self, plan: &Plan) -> DVector<f64> {
        project_one(&plan.mean_control(self.cfg.command_hold_s), &self.problem.control_constraint())
    }

    /// [`RecedingHorizon::step`] with the deadline outcome of a recorded cycle imposed (replay).
    pub fn step_timed(&mut self, s: &StateInput, now: f64, timing: ReplayTiming) -> CycleOutcome {
        self.timing = timing;
        let out = self.step(s, now);
        self.timing = ReplayTiming::Live;
        out
    }

    /// The plan's predicted terminal error against the current goal's aim point, in the
    /// problem's tolerance units (descent: the terminal position/velocity errors scaled by their
    /// tolerances, 2-norm; `docs/problems.md`); `None` without a goal or a prediction.
    pub fn terminal_error(&self, plan: &Plan) -> Option<f64> {
        let goal = self.goal.as_ref()?;
        let xt = self.mission.aim(&goal.x_target);
        let last = plan.x.row(plan.x.nrows().checked_sub(1)?);
        if last.len() != xt.len() {
            return None;
        }
        Some(match self.problem.terminal_equality() {
            Some((idx, scale)) => idx.iter().zip(&scale).map(|(&c, sc)| ((last[c] - xt[c]) / sc).powi(2)).sum::<f64>().sqrt(),
            None => (last.transpose() - &xt).norm(),
        })
    }

    /// Answers one state; `now` is the controller's clock [s] (ROS time; sim time under
    /// `use_sim_time`). Never fails: see the module docs for the statuses.
    pub fn step(&mut self, s: &StateInput, now: f64) -> CycleOutcome {
        let start = Instant::now();
        let due = self.held_goal.is_some() && self.new_goal_at.is_none_or(|at| now < at || now - at >= self.cfg.plausibility.min_goal_interval_s);
        if let Some(g) = if due { self.held_goal.take() } else { None } {
            match self.set_goal_at(&g, Some(now)) {
                Ok(()) => log::info!("goal held by the rate limit taken: x_target {:?}, t_go {} s", g.x_target, g.t_go),
                Err(e) => log::warn!("goal held by the rate limit refused now: {e}"),
            }
        }
        let (x, x_target) = match self.guard(s, now) {
            Ok(v) => v,
            Err((x, r)) => {
                self.out_of_order |= matches!(r, Rejected::OutOfOrder { .. });
                return self.failed(s, x.as_ref(), r, start, None);
            }
        };
        if self.timing == ReplayTiming::Refused {
            return self.failed(s, Some(&x), Rejected::RecordedRefusal, start, None);
        }
        let x = self.mission.observe(s.stamp, &x, self.sent.as_ref());
        let aim = self.mission.aim(&x_target);
        let phase = self.mission.t_go(s.stamp, &x, &aim).and_then(|t_go| Ok((t_go, self.mission.phase(t_go)?)));
        let (t_go, phase) = match phase {
            Ok(v) => v,
            Err(r) => return self.failed(s, Some(&x), r, start, None),
        };
        // a one-off t_go search (descent's first state of a goal with t_go = 0) is not
        // refinement: the deadline then counts from here
        let start = if start.elapsed().as_secs_f64() > 0.5 * self.cfg.deadline_s { Instant::now() } else { start };
        let deadline = start + Duration::from_secs_f64(self.cfg.deadline_s);
        if phase == Phase::Refine {
            // a new reference is taken when the terminal phase starts again
            self.reference = None;
        }
        let (u, status, iterations, policy_error) = match phase {
            Phase::FinalDescent => {
                let (u, horizon) = self.mission.final_descent(&x, &x_target);
                let plan = self.make_plan(s, &x, &x_target, horizon, u, PlanStatus::Terminal, 0, start);
                return self.answer(plan, start, None);
            }
            Phase::FollowReference => match self.reference.clone().or_else(|| self.last.clone()) {
                Some(reference) => {
                    let u = shift_controls(&reference, s.stamp, t_go, self.problem.horizon());
                    self.reference = Some(reference);
                    (u, PlanStatus::Terminal, 0, None)
                }
                // nothing refined yet to follow: refine
                None => match self.refine(s, &x, &aim, t_go, start, deadline) {
                    Ok(c) => c,
                    Err(out) => return *out,
                },
            },
            Phase::Refine => match self.refine(s, &x, &aim, t_go, start, deadline) {
                Ok(c) => c,
                Err(out) => return *out,
            },
        };
        let t_finish = Instant::now();
        // retiming by re-planning (descent without the correction): after a converged refinement
        // only (the worker is idle), each held to what is left of this cycle's deadline
        let mut worker = if status == PlanStatus::Converged { self.worker.as_mut().ok() } else { None };
        let until = deadline - Duration::from_secs_f64((0.1 * self.cfg.deadline_s).min(2e-3));
        let mut replan = |tg: f64| worker_plan(worker.as_deref_mut()?, &x, &aim, tg, until);
        let finished = self.mission.finish(s.stamp, &x, &aim, t_go, u, deadline, &mut replan);
        let took = t_finish.elapsed().as_secs_f64();
        self.finish_s = Some(self.finish_s.map_or(took, |f| 0.9 * f + 0.1 * took));
        self.stats.retimed += u64::from(finished.retimed_s.is_some());
        self.stats.correction_steps += finished.correction_steps as u64;
        self.stats.finished += 1;
        let plan = self.make_plan(s, &x, &aim, finished.t_go, finished.u, status, iterations, start);
        self.answer(plan, start, policy_error)
    }

    /// The guards of step 1: the state `x` and the goal's target, or the reason (with the state
    /// when it is usable for the safe command).
    #[allow(clippy::type_complexity)]
    fn guard(&self, s: &StateInput, now: f64) -> Result<(DVector<f64>, DVector<f64>), (Option<DVector<f64>>, Rejected)> {
        let n = self.problem.state_dim();
        let usable = (s.x.len() == n && s.x.iter().all(|v| v.is_finite())).then(|| DVector::from_column_slice(&s.x));
        let refuse = |r: Rejected| Err((usable.clone(), r));
        if let Err(e) = &self.worker {
            return refuse(Rejected::NoPolicy(e.clone()));
        }
        let Some(goal) = &self.goal else { return refuse(Rejected::NoGoal) };
        if s.x.len() != n {
            return refuse(Rejected::WrongDimension { what: "state.x", got: s.x.len(), want: n, problem: self.problem_cfg.name.to_string() });
        }
        if let Err(r) = super::mission::check_finite("state.x", &s.x) {
            return refuse(r);
        }
        if !s.stamp.is_finite() || (now - s.stamp).abs() > self.cfg.max_state_age_s {
            return refuse(Rejected::Stale { age_s: now - s.stamp, max_s: self.cfg.max_state_age_s });
        }
        if let Some(last) = &self.last {
            // 1 us: stamps go through a float round trip in the messages
            if s.stamp < last.stamp - 1e-6 {
                return refuse(Rejected::OutOfOrder { behind_s: last.stamp - s.stamp });
            }
        }
        let want = &self.cfg.plausibility.frame_id;
        if !want.is_empty() && &s.frame_id != want {
            return refuse(Rejected::WrongFrame { what: "state", got: s.frame_id.clone(), want: want.clone() });
        }
        let x = DVector::from_column_slice(&s.x);
        if let Err(r) = self.mission.check_state(&x, &goal.x_target) {
            return refuse(r);
        }
        Ok((x, goal.x_target.clone()))
    }

    /// Step 3 in [`Phase::Refine`]: the policy's newest iterate in time, else the shifted previous
    /// plan; `(u, status, iterations, policy error)`, or the FAILED outcome when there is neither.
    #[allow(clippy::type_complexity)]
    fn refine(
        &mut self,
        s: &StateInput,
        x: &DVector<f64>,
        aim: &DVector<f64>,
        t_go: f64,
        start: Instant,
        deadline: Instant,
    ) -> Result<(DMatrix<f64>, PlanStatus, u32, Option<String>), Box<CycleOutcome>> {
        let horizon = self.problem.horizon();
        let source = self.fresh.clone().or_else(|| self.last.as_ref().map(|l| Source { stamp: l.stamp, dt: l.dt, u: l.u.clone() }));
        // stop waiting early enough for the finish, rollout and publication that follow: the
        // larger of 2 ms (at most 10% of the deadline) and twice the recent finish time (at
        // most 30% of the deadline); 30% before the first finish is timed and when there is no
        // previous plan (the first plan of a goal is finished from scratch, e.g. from ZEM/ZEV)
        let cap = 0.3 * self.cfg.deadline_s;
        let reserve = match (self.finish_s, &source) {
            (Some(f), Some(_)) => (0.1 * self.cfg.deadline_s).min(2e-3).max((2.0 * f).min(cap)),
            _ => cap,
        };
        let wait_until = deadline - Duration::from_secs_f64(reserve);
        let shifted = source.as_ref().map(|src| shift(&src.u, src.stamp, src.dt, s.stamp, t_go, horizon));
        let worker = match self.worker.as_mut() {
            Ok(w) => w,
            Err(e) => {
                let r = Rejected::NoPolicy(e.clone());
                return Err(Box::new(self.failed(s, Some(x), r, start, None)));
            }
        };
        let k_full = worker.iterations();
        let u_warm = if self.cfg.warm_start { shifted.clone() } else { None };
        let (mut best, mut converged, mut policy_error): (Option<Iterate>, bool, Option<String>) = (None, false, None);
        let mut late: Option<(Job, Iterate)> = None;
        // a replayed missed deadline: no job at all (see ReplayTiming::Missed)
        let timing = self.timing;
        let id = (timing != ReplayTiming::Missed).then(|| worker.submit(PlanRequest { x0: x.clone(), x_target: aim.clone(), t_go, u_warm }, deadline));
        while let (Some(id), Some((jid, ev))) = (id, id.and_then(|_| worker.next_event(wait_until))) {
            if jid != id {
                // a late iterate of an earlier job: usable as the plan to shift from (the newest
                // answered state wins)
                if let (WorkerEvent::Iterate(it), Some(job)) = (ev, self.pending.iter().find(|j| j.id == jid)) {
                    if it.u.iter().all(|v| v.is_finite()) && late.as_ref().is_none_or(|(l, _)| l.state.stamp < job.state.stamp) {
                        late = Some((job.clone(), it));
                    }
                }
                continue;
            }
            match ev {
                WorkerEvent::Iterate(it) if it.u.shape() != (horizon, self.problem.control_dim()) || it.u.iter().any(|v| !v.is_finite()) => {
                    policy_error = Some(format!("iterate {} has shape {:?} or a non-finite entry; ignored", it.k, it.u.shape()));
                    break;
                }
                WorkerEvent::Iterate(it) => {
                    converged = it.k >= k_full;
                    let enough = matches!(timing, ReplayTiming::Iterations(k) if it.k >= k);
                    best = Some(it);
                    if converged || enough {
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
        // a replayed ANYTIME job is cut at iterate k: its later iterates are never adopted
        if let Some(id) = id.filter(|_| !matches!(timing, ReplayTiming::Iterations(_))) {
            self.pending.push_back(Job { id, state: s.clone(), t_go });
            if self.pending.len() > PENDING_JOBS {
                self.pending.pop_front();
            }
        }
        let shifted = match late {
            Some((job, it)) if source.as_ref().is_none_or(|l| l.stamp < job.state.stamp) => {
                // adopted: later fallbacks resample it, not the older plan
                let src = Source { stamp: job.state.stamp, dt: job.t_go / horizon as f64, u: it.u };
                let u = shift(&src.u, src.stamp, src.dt, s.stamp, t_go, horizon);
                self.fresh = Some(src);
                Some(u)
            }
            _ => shifted,
        };
        // nothing refined in time and nothing to shift: the mission's fast first plan, if any
        let shifted = shifted.or_else(|| self.mission.first_plan(x, aim, t_go));
        match (best, shifted) {
            (Some(it), _) => Ok((it.u, if converged { PlanStatus::Converged } else { PlanStatus::Anytime }, it.k, policy_error)),
            (None, Some(u)) => Ok((u, PlanStatus::FallbackShifted, 0, policy_error)),
            (None, None) => {
                let r = Rejected::NoPolicy(
                    policy_error.clone().unwrap_or_else(|| format!("no iterate within the {} s deadline and no previous plan", self.cfg.deadline_s)),
                );
                Err(Box::new(self.failed(s, Some(x), r, start, policy_error)))
            }
        }
    }

    /// Keeps `plan` as the last good plan, counts it and answers with it.
    fn answer(&mut self, plan: Plan, start: Instant, policy_error: Option<String>) -> CycleOutcome {
        let late = self.is_late(start);
        self.stats.answers.record(plan.status, plan.solve_time_ms, late);
        if plan.status != PlanStatus::FallbackShifted {
            self.fresh = Some(Source { stamp: plan.stamp, dt: plan.dt, u: plan.u.clone() });
        }
        self.sent = Some(self.command(&plan));
        self.last = Some(plan.clone());
        CycleOutcome { plan, rejected: None, policy_error, late }
    }

    #[allow(clippy::too_many_arguments)]
    fn make_plan(
        &self,
        s: &StateInput,
        x: &DVector<f64>,
        xt: &DVector<f64>,
        t_go: f64,
        u: DMatrix<f64>,
        status: PlanStatus,
        iterations: u32,
        start: Instant,
    ) -> Plan {
        let dt = t_go / self.problem.horizon() as f64;
        let xs = self.problem.rollout(x, &u, dt).ok().filter(|m| m.iter().all(|v| v.is_finite())).unwrap_or_else(|| DMatrix::zeros(u.nrows() + 1, x.len()));
        let cost = self.problem.cost(&xs, &u, xt, dt);
        if log::log_enabled!(log::Level::Debug) {
            // where the plan ends in the problem's own (RK4) dynamics: what a rosbag replay or a
            // closed-loop run shows when plans land in the network's in-loop model but not here
            let last = xs.row(xs.nrows() - 1);
            let miss = match self.problem.terminal_equality() {
                Some((idx, scale)) => idx.iter().zip(&scale).map(|(&c, sc)| ((last[c] - xt[c]) / sc).powi(2)).sum::<f64>().sqrt(),
                None => (last.transpose() - xt).norm(),
            };
            log::debug!(
                "plan at stamp {:.2} s: {status:?}, t_go {t_go:.2} s, {iterations} iterations, predicted terminal error {miss:.3} (tolerance units)",
                s.stamp
            );
        }
        Plan {
            stamp: s.stamp,
            frame_id: s.frame_id.clone(),
            dt,
            u,
            x: xs,
            cost: if cost.is_finite() { cost } else { f64::MAX },
            status,
            iterations,
            solve_time_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// A FAILED answer with the mission's safe command held over the horizon; the last good plan
    /// is kept.
    fn failed(&mut self, s: &StateInput, x: Option<&DVector<f64>>, r: Rejected, start: Instant, policy_error: Option<String>) -> CycleOutcome {
        // only a plausible state sizes the safe command (a finite but absurd one, refused for
        // its frame or stamp before its content was checked, would size it absurdly)
        let x = x.filter(|x| self.goal.as_ref().is_none_or(|g| self.mission.check_state(x, &g.x_target).is_ok()));
        let cmd = self.mission.safe_command(x, self.goal.as_ref().map(|g| &g.x_target), self.last.as_ref(), s.stamp, &r);
        // the mission's safe command is finite for a plausible state; whatever slipped through,
        // a non-finite command is never published (the problem's own zero-state fallback)
        let cmd = if cmd.iter().all(|v| v.is_finite()) { cmd } else { self.mission.safe_command(None, None, None, s.stamp, &r) };
        let x0 = x.cloned().unwrap_or_else(|| DVector::zeros(self.problem.state_dim()));
        let mut plan = self.make_plan(s, &x0, &x0, self.problem.default_t_go(), hold(&cmd, self.problem.horizon()), PlanStatus::Failed, 0, start);
        if x.is_none() {
            plan.x.fill(0.0);
        }
        plan.cost = 0.0;
        self.sent = Some(self.command(&plan));
        let late = self.is_late(start);
        self.stats.answers.record(plan.status, plan.solve_time_ms, late);
        CycleOutcome { plan, rejected: Some(r), policy_error, late }
    }

    /// The answer came more than 1 ms after the deadline.
    fn is_late(&self, start: Instant) -> bool {
        start.elapsed().as_secs_f64() > self.cfg.deadline_s + 1e-3
    }
}

/// The previous plan shifted to `stamp`: `N` controls on the new grid `dt' = t_go / N`, control
/// j being the previous plan's control (zero-order hold) at time `stamp + (j + 1/2) dt'`, the last
/// control held beyond its end. With `dt' = dt` and `stamp = prev.stamp + dt` this is the
/// classic shift by one step with the last control repeated. `[N, m]`.
pub fn shift_controls(prev: &Plan, stamp: f64, t_go: f64, horizon: usize) -> DMatrix<f64> {
    shift(&prev.u, prev.stamp, prev.dt, stamp, t_go, horizon)
}

/// A full refinement by `worker` from `x` to `aim` with time-to-go `t_go` [s], waited for until
/// `until`: its last iterate `[N, m]`, or `None` (no finite iterate by then; a later one is
/// dropped with the job).
fn worker_plan(worker: &mut InferenceWorker, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64, until: Instant) -> Option<DMatrix<f64>> {
    let id = worker.submit(PlanRequest { x0: x.clone(), x_target: aim.clone(), t_go, u_warm: None }, until);
    let mut last = None;
    while let Some((jid, ev)) = worker.next_event(until) {
        if jid != id {
            continue;
        }
        match ev {
            WorkerEvent::Iterate(it) => last = Some(it.u),
            _ => break,
        }
    }
    last.filter(|u| u.iter().all(|v| v.is_finite()))
}

/// [`shift_controls`] of controls `u` `[N, m]` that start at `from_stamp` [s] with step
/// `from_dt` [s].
pub(crate) fn shift(u: &DMatrix<f64>, from_stamp: f64, from_dt: f64, stamp: f64, t_go: f64, horizon: usize) -> DMatrix<f64> {
    let dt_new = t_go / horizon as f64;
    // sampled at the middle of the new step: robust to stamp jitter when the control period is a
    // whole number of plan steps
    DMatrix::from_fn(horizon, u.ncols(), |j, c| u[(zoh_index(stamp - from_stamp + (j as f64 + 0.5) * dt_new, from_dt, u.nrows()), c)])
}

#[cfg(test)]
mod tests {
    //! The generic cycle with a [`ReplayPolicy`] (no trained weights): deadline -> FALLBACK_SHIFTED
    //! with an exactly shifted sequence, delays between iterations -> ANYTIME, every guard ->
    //! FAILED with its reason and the last plan kept, a late iterate adopted; descent's phases
    //! -> TERMINAL.
    use std::sync::Arc;

    use super::*;
    use crate::config::ProblemKind;
    use crate::control::policy::{DelayKnob, ReplayPolicy};

    const DEADLINE_S: f64 = 0.2;

    /// A double-integrator plan whose rows are all different, so a shift is visible.
    fn di_plan() -> DMatrix<f64> {
        DMatrix::from_fn(50, 1, |k, _| -1.0 + 2.0 * k as f64 / 49.0)
    }

    fn di_controller(knob: Arc<DelayKnob>) -> RecedingHorizon {
        let problem = ProblemConfig::new(ProblemKind::DoubleIntegrator);
        let p = problem.clone();
        // no cost refinement: these tests follow the replayed plans through the shift mechanics
        let cfg = ControllerConfig { deadline_s: DEADLINE_S, cost_refinement_steps: 0, ..Default::default() };
        RecedingHorizon::with_policy(&problem, cfg, move || Ok(ReplayPolicy::new(&p, vec![di_plan() * 0.5, di_plan()], knob))).unwrap()
    }

    fn state(stamp: f64, x: &[f64]) -> StateInput {
        StateInput { stamp, frame_id: "world".into(), x: x.to_vec() }
    }

    fn goal() -> GoalInput {
        GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0, 0.0], t_go: 0.0 }
    }

    #[test]
    fn a_state_from_before_the_last_answer_is_refused_until_the_goal_comes_again() {
        let mut ctl = di_controller(Arc::new(DelayKnob::default()));
        ctl.set_goal(&goal()).unwrap();
        assert_eq!(ctl.step(&state(101.0, &[1.0, 0.0]), 101.0).plan.status, PlanStatus::Converged);
        // the clock jumped back 10 s (a simulator reset, a bag played in a loop)
        let out = ctl.step(&state(91.0, &[1.0, 0.0]), 91.0);
        assert!(matches!(out.rejected, Some(Rejected::OutOfOrder { .. })), "{:?}", out.rejected);
        assert_eq!(ctl.last_plan().map(|p| p.stamp), Some(101.0), "the last good plan is kept");
        assert!(matches!(ctl.step(&state(91.1, &[1.0, 0.0]), 91.1).rejected, Some(Rejected::OutOfOrder { .. })));
        // the same goal again starts afresh
        ctl.set_goal(&goal()).unwrap();
        let out = ctl.step(&state(91.2, &[1.0, 0.0]), 91.2);
        assert!(out.rejected.is_none(), "{:?}", out.rejected);
        assert_eq!(out.plan.status, PlanStatus::Converged);
        // and an identical goal without a refusal before it keeps the plan
        ctl.set_goal(&goal()).unwrap();
        assert_eq!(ctl.last_plan().map(|p| p.stamp), Some(91.2));
    }

    #[test]
    fn inputs_from_another_frame_and_goals_from_the_future_are_refused_keeping_the_last_plan() {
        let mut ctl = di_controller(Arc::new(DelayKnob::default()));
        let mut cfg = ctl.config().clone();
        cfg.plausibility.frame_id = "world".into();
        ctl.set_config(cfg).unwrap();
        let site = GoalInput { frame_id: "world".into(), ..goal() };
        ctl.set_goal_at(&site, Some(100.0)).unwrap();
        assert_eq!(ctl.step(&state(101.0, &[1.0, 0.0]), 101.0).plan.status, PlanStatus::Converged);
        // a state in another frame: refused, the last plan kept
        let odd = StateInput { frame_id: "map".into(), ..state(101.1, &[1.0, 0.0]) };
        let out = ctl.step(&odd, 101.1);
        assert_eq!(out.rejected, Some(Rejected::WrongFrame { what: "state", got: "map".into(), want: "world".into() }));
        assert_eq!(out.plan.status, PlanStatus::Failed);
        assert_eq!(ctl.last_plan().map(|p| p.stamp), Some(101.0), "the last good plan is kept");
        // a goal in another frame, or stamped an hour ahead: refused, the goal stays
        let moved = GoalInput { frame_id: "not_the_site".into(), x_target: vec![5.0, 0.0], ..goal() };
        assert!(matches!(ctl.set_goal_at(&moved, Some(101.2)), Err(Rejected::WrongFrame { what: "goal", .. })));
        let ahead = GoalInput { stamp: 101.2 + 3600.0, x_target: vec![5.0, 0.0], ..site.clone() };
        let e = ctl.set_goal_at(&ahead, Some(101.2)).unwrap_err();
        assert!(matches!(e, Rejected::FutureGoal { .. }), "{e}");
        assert_eq!(e.reason(), "future_goal");
        assert_eq!(ctl.last_plan().map(|p| p.stamp), Some(101.0), "a refused goal keeps the plan");
        assert!(ctl.step(&state(101.3, &[1.0, 0.0]), 101.3).rejected.is_none(), "the old goal is still flown");
        // within the lead, and 1.4 s after the last new goal: taken
        let soon = GoalInput { stamp: 101.4 + 0.5, x_target: vec![1.0, 0.0], ..site.clone() };
        assert!(ctl.set_goal_at(&soon, Some(101.4)).is_ok());
        // the same target with a new stamp (a restart of its clock, as trc_sim sends): not limited
        let restarted = GoalInput { stamp: 101.6, ..soon.clone() };
        assert!(ctl.set_goal_at(&restarted, Some(101.6)).is_ok(), "a restart is not limited");
        // another new target 0.5 s after the last new one: rate-limited and held; the goal in
        // force re-sent as it is meanwhile changes nothing
        let next = GoalInput { stamp: 101.9, x_target: vec![3.0, 0.0], ..site };
        let e = ctl.set_goal_at(&next, Some(101.9)).unwrap_err();
        assert_eq!(e.reason(), "goal_rate_limited", "{e}");
        assert!(ctl.set_goal_at(&restarted, Some(101.95)).is_ok(), "the same goal again is not limited");
        // the held goal is taken by the first state after the interval, not before
        ctl.step(&state(102.2, &[1.0, 0.0]), 102.2);
        assert_eq!(ctl.goal_target().map(|t| t[0]), Some(1.0), "0.8 s after the last new goal: the goal in force stays");
        ctl.step(&state(102.5, &[1.0, 0.0]), 102.5);
        assert_eq!(ctl.goal_target().map(|t| t[0]), Some(3.0), "1.1 s after: the held goal is taken");
    }

    #[test]
    fn deadline_overrun_publishes_the_shifted_previous_plan_on_time() {
        let knob = Arc::new(DelayKnob::default());
        let mut ctl = di_controller(knob.clone());
        ctl.set_goal(&goal()).unwrap();
        let first = ctl.step(&state(100.0, &[1.0, -0.5]), 100.0);
        assert_eq!((first.plan.status, first.plan.iterations), (PlanStatus::Converged, 2), "{:?}", first.rejected);
        assert_eq!(first.plan.u, di_plan(), "the last iterate, unchanged by the fixed-horizon finish");
        assert!((first.plan.dt - 0.1).abs() < 1e-12);
        // inference now takes 3 deadlines: every cycle still answers by its deadline
        knob.set(Duration::from_secs_f64(3.0 * DEADLINE_S), Duration::ZERO);
        for k in 1..=3usize {
            let stamp = 100.0 + k as f64 * 0.1;
            let started = Instant::now();
            let out = ctl.step(&state(stamp, &[1.0, -0.5]), stamp);
            let took = started.elapsed().as_secs_f64();
            assert!(took < DEADLINE_S + 0.05 && !out.late, "cycle {k} answered after {took:.3} s");
            assert_eq!((out.plan.status, out.plan.stamp, out.plan.dt), (PlanStatus::FallbackShifted, stamp, first.plan.dt), "cycle {k}");
            assert_eq!(out.plan.x.row(0).transpose(), DVector::from_vec(vec![1.0, -0.5]), "the prediction starts at the answered state");
            for j in 0..50 {
                assert_eq!(out.plan.u[(j, 0)], di_plan()[((j + k).min(49), 0)], "cycle {k}: control {j} is the first plan's control {}", j + k);
            }
        }
        assert_eq!(ctl.stats().answers.count(PlanStatus::FallbackShifted), 3);
        assert_eq!(ctl.stats().answers.count(PlanStatus::Terminal), 0, "a missed deadline is never counted as a terminal phase");
    }

    #[test]
    fn delay_between_iterations_gives_the_newest_iterate_anytime() {
        let knob = Arc::new(DelayKnob::default());
        let mut ctl = di_controller(knob.clone());
        ctl.set_goal(&goal()).unwrap();
        knob.set(Duration::ZERO, Duration::from_secs_f64(0.6 * DEADLINE_S));
        let out = ctl.step(&state(200.0, &[0.5, 0.5]), 200.0);
        assert_eq!((out.plan.status, out.plan.iterations), (PlanStatus::Anytime, 1), "{:?}", out.rejected);
        assert_eq!(out.plan.u, di_plan() * 0.5);
    }

    #[test]
    fn a_late_iterate_of_an_overloaded_first_cycle_is_adopted_as_the_plan_to_shift() {
        let knob = Arc::new(DelayKnob::default());
        let mut ctl = di_controller(knob.clone());
        ctl.set_goal(&goal()).unwrap();
        // the first job finishes its first iterate after 1.5 deadlines: nothing to publish yet
        knob.set(Duration::from_secs_f64(1.5 * DEADLINE_S), Duration::ZERO);
        let out = ctl.step(&state(200.0, &[0.5, 0.5]), 200.0);
        assert_eq!(out.plan.status, PlanStatus::Failed);
        assert!(matches!(&out.rejected, Some(Rejected::NoPolicy(e)) if e.contains("no previous plan")), "{:?}", out.rejected);
        // the next job is slow too; meanwhile the first job's iterate has arrived
        knob.set(Duration::from_secs_f64(3.0 * DEADLINE_S), Duration::ZERO);
        std::thread::sleep(Duration::from_secs_f64(0.8 * DEADLINE_S));
        let next = ctl.step(&state(200.1, &[0.5, 0.5]), 200.1);
        assert_eq!(next.plan.status, PlanStatus::FallbackShifted, "{:?}", next.rejected);
        assert_eq!(next.plan.u[(0, 0)], 0.5 * di_plan()[(1, 0)], "the late first iterate, shifted by one step");
    }

    #[test]
    fn an_inference_slower_than_two_deadlines_is_adopted_when_it_finishes_not_restarted() {
        // every refinement takes 2.5 deadlines: an iterate arrives two cycles after its job was
        // submitted, when two newer jobs exist. It is adopted then (FALLBACK_SHIFTED from it), and
        // from then on no cycle fails (before: only the previous job's iterates were adopted,
        // so every inference was abandoned and every cycle failed)
        let knob = Arc::new(DelayKnob::default());
        knob.set(Duration::from_secs_f64(2.5 * DEADLINE_S), Duration::ZERO);
        let mut ctl = di_controller(knob);
        ctl.set_goal(&goal()).unwrap();
        let mut statuses = Vec::new();
        for c in 0..8 {
            let stamp = 300.0 + 0.1 * c as f64;
            statuses.push(ctl.step(&state(stamp, &[0.5, 0.5]), stamp).plan.status);
        }
        let first_plan = statuses.iter().position(|s| *s != PlanStatus::Failed).expect("a plan within the first cycles");
        assert!(first_plan <= 3, "{statuses:?}");
        assert!(statuses[first_plan..].iter().all(|s| *s == PlanStatus::FallbackShifted), "{statuses:?}");
    }

    #[test]
    fn guards_fail_safe_with_a_reason_and_keep_the_last_plan() {
        let mut ctl = di_controller(Arc::new(DelayKnob::default()));
        let out = ctl.step(&state(10.0, &[1.0, 0.0]), 10.0);
        assert_eq!((out.plan.status, out.rejected.clone()), (PlanStatus::Failed, Some(Rejected::NoGoal)));
        assert!(out.plan.u.iter().all(|u| *u == 0.0), "the double integrator's safe command is u = 0");
        ctl.set_goal(&goal()).unwrap();
        assert_eq!(ctl.step(&state(10.0, &[1.0, 0.0]), 10.0).plan.status, PlanStatus::Converged);
        let kept = ctl.last_plan().cloned().unwrap();
        for (s, now, msg) in [
            (state(10.1, &[1.0, 0.0, 3.0]), 10.1, "needs n = 2"),
            (state(10.1, &[f64::NAN, 0.0]), 10.1, "state.x[0] is NaN"),
            (state(10.1, &[1.0, f64::INFINITY]), 10.1, "state.x[1] is inf"),
            (state(9.0, &[1.0, 0.0]), 10.1, "stale state"),
            (state(f64::NAN, &[1.0, 0.0]), 10.1, "stale state"),
            (state(11.0, &[1.0, 0.0]), 10.1, "stale state"),
        ] {
            let out = ctl.step(&s, now);
            let text = out.rejected.as_ref().map(ToString::to_string).unwrap_or_default();
            assert_eq!(out.plan.status, PlanStatus::Failed, "{msg}");
            assert!(text.contains(msg), "log line `{text}` should say `{msg}`");
            assert!(out.plan.u.iter().chain(out.plan.x.iter()).all(|v| v.is_finite()), "{msg}: never a NaN");
            assert_eq!(ctl.last_plan(), Some(&kept), "{msg}: the last good plan is kept");
        }
        assert!(matches!(
            ctl.set_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![0.0], t_go: 0.0 }),
            Err(Rejected::WrongDimension { .. })
        ));
        assert!(matches!(
            ctl.set_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![f64::NAN, 0.0], t_go: 0.0 }),
            Err(Rejected::NonFinite { .. })
        ));
        assert_eq!(ctl.last_plan(), Some(&kept), "a refused goal keeps the plan");
        assert_eq!(ctl.step(&state(10.2, &[0.9, 0.0]), 10.2).plan.status, PlanStatus::Converged);
        assert_eq!(ctl.stats().answers.count(PlanStatus::Failed), 7);
    }

    #[test]
    fn a_policy_that_cannot_load_fails_every_cycle_with_the_reason() {
        let problem = ProblemConfig::new(ProblemKind::DoubleIntegrator);
        let mut ctl = RecedingHorizon::with_policy(&problem, ControllerConfig::default(), || -> Result<ReplayPolicy, PolicyError> {
            Err(PolicyError::Inference("broken".into()))
        })
        .unwrap();
        assert!(!ctl.has_policy());
        ctl.set_goal(&goal()).unwrap();
        let out = ctl.step(&state(1.0, &[1.0, 0.0]), 1.0);
        assert!(matches!(&out.rejected, Some(Rejected::NoPolicy(e)) if e.contains("broken")), "{:?}", out.rejected);
    }

    #[test]
    fn missed_deadlines_in_a_shrinking_horizon_resample_the_last_fresh_plan_once() {
        // descent: every missed deadline publishes the last refined plan resampled to the new,
        // shorter step, never a resampled resampled plan (whose errors add up cycle by cycle)
        let problem = ProblemConfig::new(ProblemKind::Descent);
        let x0 = crate::data::sample_instance(&problem, 0, crate::data::Split::Test, 0).x0;
        let mut solver = crate::solvers::for_problem(&problem, crate::solvers::SolverSettings::default()).unwrap();
        let sol = solver
            .solve(&crate::solvers::Instance { x0: x0.clone(), x_target: DVector::from_vec(vec![0.0, 0.0, 1.0, 0.0, 0.0, -0.35, 0.0]), t_go: None })
            .unwrap();
        let knob = Arc::new(DelayKnob::default());
        let mut cfg = ControllerConfig { deadline_s: DEADLINE_S, ..Default::default() };
        cfg.terminal_correction.enabled = false;
        cfg.terminal_correction.retime_with_policy = false;
        let (p, k, u) = (problem.clone(), knob.clone(), sol.u.clone());
        let mut ctl = RecedingHorizon::with_policy(&problem, cfg, move || Ok(ReplayPolicy::new(&p, vec![u], k))).unwrap();
        ctl.set_goal(&GoalInput { frame_id: String::new(), stamp: 50.0, x_target: vec![0.0; 7], t_go: sol.t_go }).unwrap();
        let first = ctl.step(&state(50.0, x0.as_slice()), 50.0);
        assert_eq!(first.plan.status, PlanStatus::Converged, "{:?}", first.rejected);
        // no iterate arrives during the test (a late one would be adopted and resampled instead)
        knob.set(Duration::from_secs_f64(50.0 * DEADLINE_S), Duration::ZERO);
        let (mut prev, mut chained_differs) = (first.plan.clone(), 0);
        for c in 1..=6 {
            let stamp = 50.0 + 0.1 * c as f64;
            let out = ctl.step(&state(stamp, x0.as_slice()), stamp);
            assert_eq!(out.plan.status, PlanStatus::FallbackShifted, "cycle {c}");
            let t_go = sol.t_go - 0.1 * c as f64;
            assert_eq!(out.plan.u, shift_controls(&first.plan, stamp, t_go, 50), "cycle {c}: the refined plan resampled once");
            chained_differs += usize::from(shift_controls(&prev, stamp, t_go, 50) != out.plan.u);
            prev = out.plan;
        }
        assert!(chained_differs > 0, "resampling the previous fallback would differ (else this test checks nothing)");
    }

    /// Issue 12: an overloaded machine whose first inference of a goal takes longer than the
    /// deadline still answers the first state within the deadline with a usable plan (the
    /// mission's ZEM/ZEV plan, finished by the correction), not FAILED; the late iterate is
    /// adopted when it arrives.
    #[test]
    fn a_first_inference_slower_than_the_deadline_still_gives_a_plan_within_the_deadline() {
        let problem = ProblemConfig::new(ProblemKind::Descent);
        let x0 = crate::data::sample_instance(&problem, 0, crate::data::Split::Test, 0).x0;
        let descent = crate::problems::PoweredDescent::new(problem.descent.clone()).unwrap();
        let plan = crate::baseline::zem_zev_plan(&descent, &x0, &descent.default_target(), 40.0, 50);
        let knob = Arc::new(DelayKnob::default());
        knob.set(Duration::from_secs_f64(3.0 * DEADLINE_S), Duration::ZERO);
        let p = problem.clone();
        let k2 = knob.clone();
        let cfg = ControllerConfig { deadline_s: DEADLINE_S, ..Default::default() };
        let mut gate = descent.default_target();
        gate[2] += cfg.gate_altitude_m;
        gate[5] -= cfg.gate_sink_rate_mps;
        let mut ctl = RecedingHorizon::with_policy(&problem, cfg, move || Ok(ReplayPolicy::new(&p, vec![plan], k2))).unwrap();
        ctl.set_goal(&GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0; 7], t_go: 40.0 }).unwrap();
        let started = Instant::now();
        let out = ctl.step(&state(100.0, x0.as_slice()), 100.0);
        let took = started.elapsed().as_secs_f64();
        assert!(took < DEADLINE_S + 0.05 && !out.late, "answered after {took:.3} s");
        assert_eq!(out.plan.status, PlanStatus::FallbackShifted, "{:?}", out.rejected);
        assert!(out.rejected.is_none() && out.plan.u.iter().all(|v| v.is_finite()));
        let c = descent.control_constraint();
        for k in 0..out.plan.u.nrows() {
            let u = out.plan.u.row(k).transpose();
            assert!((project_one(&u, &c) - &u).norm() < 1e-6 * u.norm(), "control {k} admissible");
        }
        // the correction moved it toward the touchdown gate (1 m, sink 0.35 m/s) in the plant model:
        // it ends nearer the gate than the raw ZEM/ZEV plan (which ignores the thrust bounds'
        // clipping); the network's plan replaces it as soon as the late iterate arrives
        let dt = out.plan.dt;
        let raw = crate::baseline::zem_zev_plan(&descent, &x0, &gate, dt * 50.0, 50);
        let miss = |xs: &DMatrix<f64>| {
            let last = xs.row(xs.nrows() - 1);
            [2usize, 5].iter().map(|&c| (last[c] - gate[c]).abs()).fold(0.0, f64::max)
        };
        let raw_miss = miss(&descent.rollout(&x0, &raw, dt).unwrap());
        let plan_miss = miss(&out.plan.x);
        assert!(plan_miss < 0.8 * raw_miss, "corrected plan misses the gate by {plan_miss:.2}, the raw ZEM/ZEV plan by {raw_miss:.2}");
        // the slow inference is not restarted on every state: it finishes and is adopted
        std::thread::sleep(Duration::from_secs_f64(3.0 * DEADLINE_S));
        let next = ctl.step(&state(100.1, x0.as_slice()), 100.1);
        assert_eq!(next.plan.status, PlanStatus::FallbackShifted);
        assert_eq!(ctl.stats().answers.count(PlanStatus::Failed), 0);
    }

    #[test]
    fn descent_phases_are_terminal_not_fallback() {
        let problem = ProblemConfig::new(ProblemKind::Descent);
        let x0 = crate::data::sample_instance(&problem, 0, crate::data::Split::Test, 0).x0;
        let cfg = ControllerConfig { deadline_s: 5.0, ..Default::default() };
        let p = problem.clone();
        let mut ctl =
            RecedingHorizon::with_policy(&problem, cfg, move || crate::control::SolverPolicy::new(&p, crate::solvers::SolverSettings::default())).unwrap();
        ctl.set_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![0.0; 7], t_go: 0.0 }).unwrap();
        let first = ctl.step(&state(50.0, x0.as_slice()), 50.0);
        assert_eq!(first.plan.status, PlanStatus::Converged, "{:?} {:?}", first.rejected, first.policy_error);
        let t_land = ctl.landing_time().expect("chosen by the LCvx search");
        // the last 3 s: the refined plan followed and finished again
        let s = t_land - 2.0;
        let x = first.plan.x.row(((s - 50.0) / first.plan.dt) as usize).transpose();
        let out = ctl.step(&state(s, x.as_slice()), s);
        assert_eq!((out.plan.status, out.plan.iterations), (PlanStatus::Terminal, 0));
        let t_land = ctl.landing_time().unwrap();
        assert!(
            (out.plan.dt * 50.0 - (t_land - s)).abs() < 1e-6 && (t_land - s - 2.0).abs() <= 2.0,
            "the plan spans the time left to the (possibly retimed) landing time"
        );
        // past t_land: the constant-sink final descent
        let out = ctl.step(&state(t_land + 0.5, x.as_slice()), t_land + 0.5);
        assert_eq!(out.plan.status, PlanStatus::Terminal);
        let sink = out.plan.u.row(0).clone_owned();
        // a bad state after t_land keeps flying the sink (the last plan), never a fresh guess
        let mut bad = x.clone();
        bad[3] = f64::NAN;
        let failed = ctl.step(&state(t_land + 0.6, bad.as_slice()), t_land + 0.6);
        assert_eq!(failed.plan.status, PlanStatus::Failed);
        assert_eq!(failed.plan.u.row(0), sink, "the safe command continues the last plan");
        assert_eq!(ctl.stats().answers.count(PlanStatus::Terminal), 2);
        assert_eq!(ctl.stats().answers.count(PlanStatus::Failed), 1);
        assert_eq!(ctl.stats().answers.count(PlanStatus::FallbackShifted), 0);
    }
}
