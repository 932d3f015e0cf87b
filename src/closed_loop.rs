//! Closed-loop episodes (ROS-free): the seeded episodes with their optimum ([`EpisodeSpec`]),
//! the one episode accounting ([`EpisodeLog`] -> [`EpisodeReport`]) shared by the lockstep loop
//! and `trc_sim`, and the lockstep loop itself ([`fly`]): the receding-horizon controller and a
//! [`Plant`] in one process at the control rate. The benchmark's many seeded episodes run here
//! (sim time advances as fast as the controller answers; each answer is still held to its
//! wall-clock deadline); `make demo` flies the same episodes over DDS with `trc_sim` and
//! `trc_node`.

use nalgebra::DVector;
use serde::{Deserialize, Serialize};

use crate::config::{ProblemConfig, ProblemKind, SimConfig};
use crate::control::{GoalInput, RecedingHorizon, StateInput, StatusCounts};
use crate::data::{sample_instance, Split};
use crate::error::ConfigError;
use crate::plan::PlanStatus;
use crate::plant::{EpisodeResult, Plant, SimPlant};
use crate::solvers::lcvx::{LcvxSolver, TfSearch, ThrustProfile};
use crate::solvers::{self, Instance, OcpSolver, SolverSettings};

/// ROS time at which lockstep episodes start [s] (any positive base works; 0 means "unset" in ROS).
pub const T0: f64 = 1000.0;

/// One episode's initial condition and its optimum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpisodeSpec {
    /// Episode index (the test-split sample index of the seed).
    pub index: u64,
    /// Initial state.
    pub x0: Vec<f64>,
    /// Target state.
    pub x_target: Vec<f64>,
    /// Time-to-go of the optimum [s] (descent: LCvx minimum-fuel t_f; others N dt).
    pub t_go: f64,
    /// Optimal cost J* from x0 (descent: fuel integral [N s]).
    pub cost_opt: f64,
    /// Descent: optimal propellant [kg] (0 otherwise).
    pub fuel_opt_kg: f64,
}

/// The episode with test-split index `index` of `seed`, solved to optimality (descent: LCvx with
/// the minimum-fuel t_f search). Initial states are [`sample_instance`]'s distribution.
///
/// # Errors
/// The solver's error as text (about 1% of sampled descent states are infeasible: the caller
/// skips to the next index).
pub fn episode_spec(problem: &ProblemConfig, seed: u64, index: u64) -> Result<EpisodeSpec, String> {
    episode_spec_in(problem, seed, Split::Test, index)
}

/// [`episode_spec`] from any split (DAgger collects on the training split).
///
/// # Errors
/// As [`episode_spec`].
pub fn episode_spec_in(problem: &ProblemConfig, seed: u64, split: Split, index: u64) -> Result<EpisodeSpec, String> {
    let inst = sample_instance(problem, seed, split, index);
    solved_spec(problem, index, Instance { t_go: None, ..inst })
}

/// The episode `index` from `inst` (x0, target, and t_go or `None` for the solver's choice) with
/// its optimum: the problem's solver (descent: LCvx), 60 s limit.
fn solved_spec(problem: &ProblemConfig, index: u64, inst: Instance) -> Result<EpisodeSpec, String> {
    let mut solver = solvers::for_problem(problem, SolverSettings::default().with_time_limit(60.0)).map_err(|e| e.to_string())?;
    let sol = solver.solve(&inst).map_err(|e| e.to_string())?;
    let n = sol.x.nrows() - 1;
    let fuel = if problem.name == ProblemKind::Descent { inst.x0[6] - sol.x[(n, 6)] } else { 0.0 };
    Ok(EpisodeSpec {
        index,
        x0: inst.x0.iter().copied().collect(),
        x_target: inst.x_target.iter().copied().collect(),
        t_go: sol.t_go,
        cost_opt: sol.cost,
        fuel_opt_kg: fuel,
    })
}

/// The first `count` feasible episodes from index `first` on.
pub fn episode_specs(problem: &ProblemConfig, seed: u64, first: u64, count: usize) -> Vec<EpisodeSpec> {
    episode_specs_in(problem, seed, Split::Test, first, count)
}

/// [`episode_specs`] from any split.
pub fn episode_specs_in(problem: &ProblemConfig, seed: u64, split: Split, first: u64, count: usize) -> Vec<EpisodeSpec> {
    let mut out = Vec::new();
    let mut i = first;
    while out.len() < count {
        match episode_spec_in(problem, seed, split, i) {
            Ok(s) => out.push(s),
            Err(e) => log::info!("episode index {i} skipped: {e}"),
        }
        i += 1;
    }
    out
}

/// The scenario file `cfg.sim.scenario` names, read (relative paths are tried from the working
/// directory, then from `package_root`); `None` when it is empty. `trc_node` applies its
/// vehicle ([`crate::scenario::Scenario::apply`]) so that the controller and `trc_sim` fly the
/// same problem.
///
/// # Errors
/// The file cannot be read or parsed (text naming it).
pub fn scenario_of(cfg: &crate::config::TrcConfig, package_root: Option<&std::path::Path>) -> Result<Option<crate::scenario::Scenario>, String> {
    if cfg.sim.scenario.is_empty() {
        return Ok(None);
    }
    let mut path = std::path::PathBuf::from(&cfg.sim.scenario);
    if path.is_relative() && !path.exists() {
        if let Some(root) = package_root {
            path = root.join(&cfg.sim.scenario);
        }
    }
    crate::scenario::Scenario::from_file(&path).map(Some).map_err(|e| e.to_string())
}

/// The episodes a closed loop flies for `cfg`: `count` episodes of the scenario `scenario`, else
/// of the file `cfg.sim.scenario` (relative paths also tried from `package_root`), each applied
/// to `cfg` first (its vehicle); else the first `count` feasible test-split states of
/// `cfg.sim.seed` from `cfg.sim.first_episode`.
///
/// # Errors
/// The scenario's error as text (unreadable, invalid, infeasible).
pub fn episodes_for(
    cfg: &mut crate::config::TrcConfig,
    count: usize,
    scenario: Option<&crate::scenario::Scenario>,
    package_root: Option<&std::path::Path>,
) -> Result<Vec<EpisodeSpec>, String> {
    let from_file = if scenario.is_none() { scenario_of(cfg, package_root)? } else { None };
    match scenario.or(from_file.as_ref()) {
        Some(s) => {
            s.apply(cfg).map_err(|e| e.to_string())?;
            log::info!(
                "scenario {}: {count} episode(s) from x0 = {:?}{}",
                s.name,
                s.x0,
                if s.source.is_empty() { String::new() } else { format!(" ({})", s.source) }
            );
            scenario_specs(s, &cfg.problem, count)
        }
        None => Ok(episode_specs(&cfg.problem, cfg.sim.seed, cfg.sim.first_episode, count)),
    }
}

/// `count` episodes of the scenario `s` (indices 0..count: the same state, other disturbance
/// draws) with their optimum, in `problem` (the scenario already applied with
/// [`crate::scenario::Scenario::apply`]). Descent: the target mass is the dry mass (free final
/// mass) and a positive `s.t_go` fixes the landing time, else LCvx searches it.
///
/// # Errors
/// The solver's error as text (an infeasible scenario).
pub fn scenario_specs(s: &crate::scenario::Scenario, problem: &ProblemConfig, count: usize) -> Result<Vec<EpisodeSpec>, String> {
    let mut xt = DVector::from_column_slice(&s.x_target);
    let descent = problem.name == ProblemKind::Descent;
    if descent {
        xt[6] = problem.descent.m_dry;
    }
    let t_go = (descent && s.t_go > 0.0).then_some(s.t_go);
    let spec =
        solved_spec(problem, 0, Instance { x0: DVector::from_column_slice(&s.x0), x_target: xt, t_go }).map_err(|e| format!("scenario {}: {e}", s.name))?;
    Ok((0..count as u64).map(|index| EpisodeSpec { index, ..spec.clone() }).collect())
}

/// Whether a landing at the site (zero velocity) exists for the vehicle of `spec` that knows its
/// faults in advance: LCvx with the thrust bounds scaled by `profile` (thrust magnitude error and
/// loss, [`ThrustProfile`]) and gravity plus the unmodelled acceleration `bias` [m/s^2], over a
/// fine t_f grid (24 points, then golden-section). The thrust direction error, the noise, the
/// latency and the mass-estimate error are left out, so the oracle is optimistic: an episode it
/// cannot land is unrecoverable by any controller (up to the LCvx discretisation and its
/// losslessness check; a t_f search or a numerical failure counts as "no landing").
pub fn clairvoyant_landing(problem: &ProblemConfig, spec: &EpisodeSpec, profile: ThrustProfile, bias: [f64; 3]) -> bool {
    let mut params = problem.descent.clone();
    for (g, b) in params.gravity.iter_mut().zip(bias) {
        *g += b;
    }
    let Ok(descent) = crate::problems::PoweredDescent::new(params) else { return false };
    let Ok(solver) = LcvxSolver::new(descent, SolverSettings::default().with_time_limit(60.0), TfSearch { grid: 24, ..TfSearch::default() }) else {
        return false;
    };
    let mut solver = solver.with_thrust_profile(profile);
    let mut xt = DVector::from_column_slice(&spec.x_target);
    xt[6] = problem.descent.m_dry;
    solver.solve(&Instance { x0: DVector::from_column_slice(&spec.x0), x_target: xt, t_go: None }).is_ok()
}

/// p-quantile (nearest rank) of unsorted values, `p` in [0, 1]; NaN when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// Seconds an episode may run past the optimum's t_f before it is ended (descent).
pub const GRACE_S: f64 = 30.0;

/// The sim settings of one episode: descent episodes end at `t_f* + GRACE_S` at the latest
/// (a vehicle still airborne then has failed); the fixed-horizon problems run for two horizons
/// (`2 N dt`) and are judged at the end; both within `sim.max_time_s`. Faults (thrust loss,
/// outage) start within `sim.fault_window_s` clipped to the first 60% of the optimum's `t_f`.
pub fn episode_sim(problem: &ProblemConfig, sim: &SimConfig, spec: &EpisodeSpec) -> SimConfig {
    let mut s = sim.clone();
    s.max_time_s = s.max_time_s.min(if problem.name == ProblemKind::Descent { spec.t_go + GRACE_S } else { 2.0 * spec.t_go });
    let end = s.fault_window_s[1].min(FAULT_WINDOW_FRACTION * spec.t_go);
    s.fault_window_s = [s.fault_window_s[0].min(end), end];
    s
}

/// Faults start within this fraction of the optimum's `t_f` (see [`episode_sim`]).
pub const FAULT_WINDOW_FRACTION: f64 = 0.6;

/// The goal a closed loop sends for `spec` at `stamp` [s] (descent: the optimum's t_f; the
/// fixed-horizon problems: 0, the controller's own horizon).
pub fn episode_goal(problem: &ProblemConfig, spec: &EpisodeSpec, stamp: f64) -> GoalInput {
    GoalInput {
        frame_id: "landing_site".into(),
        stamp,
        x_target: spec.x_target.clone(),
        t_go: if problem.name == ProblemKind::Descent { spec.t_go } else { 0.0 },
    }
}

/// One episode as reported everywhere: returned by the lockstep loop, written by `trc_sim` (one
/// YAML document per episode on `landing` and in `sim.results_file`), read by `trc demo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpisodeReport {
    /// The episode's initial condition and optimum.
    pub spec: EpisodeSpec,
    /// Plant result (touchdown error, speed, fuel, success).
    pub result: EpisodeResult,
    /// Propellant above the optimum, relative (descent; 0 otherwise).
    pub fuel_gap: f64,
    /// Answers received.
    pub cycles: u64,
    /// Answers per status (see `ControlSequence.msg`).
    pub converged: u64,
    /// See `converged`.
    pub anytime: u64,
    /// Missed deadlines (the shifted previous plan answered).
    pub fallback_shifted: u64,
    /// See `converged`.
    pub failed: u64,
    /// Planned terminal-phase answers (descent).
    pub terminal: u64,
    /// Answers later than the deadline (lockstep: the controller's own flag; over DDS: state
    /// published -> sequence received).
    pub late: u64,
    /// The controller's deadline [ms].
    pub deadline_ms: f64,
    /// Solve time of the refined answers [ms], p50 / p99 (NaN when none).
    pub solve_ms_p50: f64,
    /// See `solve_ms_p50`.
    pub solve_ms_p99: f64,
    /// End-to-end latency (state published -> answering sequence received) [ms] over DDS, p50 /
    /// p99; NaN in the lockstep loop.
    pub e2e_ms_p50: f64,
    /// See `e2e_ms_p50`.
    pub e2e_ms_p99: f64,
    /// Mean steps of the mission's classical finish per finished plan (terminal correction or
    /// cost refinement, [`crate::control::Stats`]`::correction_steps`; lockstep loop; NaN
    /// where the controller is in another process).
    #[serde(default)]
    pub correction_steps_per_plan: f64,
    /// Cycles that moved the landing time (descent retiming, by the correction or the policy;
    /// lockstep loop, 0 where the controller is in another process).
    #[serde(default)]
    pub retimes: u64,
    /// Descent with a thrust loss: whether a vehicle that knew its faults could land at all
    /// ([`clairvoyant_landing`]); `None` without a thrust loss.
    #[serde(default)]
    pub recoverable: Option<bool>,
    /// Solve times of the refined answers [ms] (kept in memory for aggregate percentiles).
    #[serde(skip)]
    pub solve_ms: Vec<f64>,
    /// True trajectory `(t, x)` at the state rate.
    pub trajectory: Vec<(f64, Vec<f64>)>,
}

/// The accounting of one closed-loop episode: every answer's status, solve time and lateness,
/// the end-to-end latencies and the true trajectory. Shared by [`fly`] and `trc_sim`.
#[derive(Debug, Clone, Default)]
pub struct EpisodeLog {
    answers: StatusCounts,
    correction: Option<(u64, u64)>,
    retimes: u64,
    e2e_ms: Vec<f64>,
    trajectory: Vec<(f64, Vec<f64>)>,
}

impl EpisodeLog {
    /// Counts an answer (its solve time when it waited on the policy, see
    /// [`PlanStatus::is_refined`]).
    pub fn answer(&mut self, status: PlanStatus, solve_ms: f64, late: bool) {
        self.answers.record(status, solve_ms, late);
    }

    /// Records the terminal correction's work: `steps` Gauss-Newton steps over `plans` finished
    /// plans (the controller's [`crate::control::Stats`] difference over the episode).
    pub fn correction(&mut self, steps: u64, plans: u64) {
        self.correction = Some((steps, plans));
    }

    /// Records the landing-time moves of the episode (the controller's [`crate::control::Stats`]
    /// difference).
    pub fn retimes(&mut self, n: u64) {
        self.retimes = n;
    }

    /// Records an end-to-end latency [ms].
    pub fn e2e(&mut self, ms: f64) {
        self.e2e_ms.push(ms);
    }

    /// Records the true state `x` at episode time `t` [s].
    pub fn state(&mut self, t: f64, x: &DVector<f64>) {
        self.trajectory.push((t, x.iter().copied().collect()));
    }

    /// The report of the finished episode.
    pub fn finish(self, spec: &EpisodeSpec, result: EpisodeResult, deadline_ms: f64) -> EpisodeReport {
        let fuel_gap = if spec.fuel_opt_kg > 0.0 { result.fuel_kg / spec.fuel_opt_kg - 1.0 } else { 0.0 };
        let a = self.answers;
        let c = |s: PlanStatus| a.count(s);
        EpisodeReport {
            spec: spec.clone(),
            result,
            fuel_gap,
            cycles: a.total(),
            converged: c(PlanStatus::Converged),
            anytime: c(PlanStatus::Anytime),
            fallback_shifted: c(PlanStatus::FallbackShifted),
            failed: c(PlanStatus::Failed),
            terminal: c(PlanStatus::Terminal),
            late: a.late,
            deadline_ms,
            solve_ms_p50: percentile(&a.solve_ms, 0.5),
            solve_ms_p99: percentile(&a.solve_ms, 0.99),
            e2e_ms_p50: percentile(&self.e2e_ms, 0.5),
            e2e_ms_p99: percentile(&self.e2e_ms, 0.99),
            correction_steps_per_plan: self.correction.map_or(f64::NAN, |(s, p)| s as f64 / p.max(1) as f64),
            retimes: self.retimes,
            recoverable: None,
            solve_ms: a.solve_ms,
            trajectory: self.trajectory,
        }
    }
}

/// Flies `spec` with `controller` against the project's simulated plant ([`SimPlant`]) in
/// lockstep at `sim.rate_hz`.
///
/// # Errors
/// [`ConfigError`] for an invalid configuration.
pub fn fly(controller: &mut RecedingHorizon, problem: &ProblemConfig, sim: &SimConfig, spec: &EpisodeSpec) -> Result<EpisodeReport, ConfigError> {
    fly_recording(controller, problem, sim, spec, None)
}

/// [`fly`], also recording every answered state with its time-to-go, `(x, t_go)` (descent: the
/// shrinking t_go; others N dt): the states the policy visits in closed loop (DAgger).
///
/// # Errors
/// As [`fly`].
pub fn fly_recording(
    controller: &mut RecedingHorizon,
    problem: &ProblemConfig,
    sim: &SimConfig,
    spec: &EpisodeSpec,
    record: Option<&mut Vec<(Vec<f64>, f64)>>,
) -> Result<EpisodeReport, ConfigError> {
    let x0 = DVector::from_column_slice(&spec.x0);
    let xt = DVector::from_column_slice(&spec.x_target);
    let mut plant = SimPlant::new(problem, &episode_sim(problem, sim, spec), x0, xt, spec.index)?;
    // a new episode: the previous episode's plan must not be shifted into this one
    controller.reset();
    controller.set_goal(&episode_goal(problem, spec, T0)).map_err(|e| ConfigError::invalid("goal", e.to_string()))?;
    let shrinking = problem.name == ProblemKind::Descent;
    let mut record = record;
    let report = fly_plant(controller, &mut plant, spec, 1.0 / sim.rate_hz, |x, t| {
        if let Some(rec) = record.as_deref_mut() {
            rec.push((x.iter().copied().collect(), if shrinking { spec.t_go - t } else { spec.t_go }));
        }
    });
    let mut report = report;
    let (loss_at, loss_s) = plant.thrust_loss();
    if problem.name == ProblemKind::Descent && loss_s > 0.0 {
        let (scale, bias) = plant.physical_disturbances();
        let profile = ThrustProfile { scale, loss: sim.thrust_loss, from_s: loss_at, to_s: loss_at + loss_s };
        report.recoverable = Some(clairvoyant_landing(problem, spec, profile, bias));
        if !report.result.success {
            log::info!(
                "episode {} missed ({:.2} m, {:.2} m/s at {:.1} s; t_f* {:.1} s) with a thrust loss from {loss_at:.1} s for {loss_s:.1} s ({})",
                spec.index,
                report.result.position_error,
                report.result.speed,
                report.result.t,
                spec.t_go,
                if report.recoverable == Some(true) { "a clairvoyant LCvx lands it" } else { "no clairvoyant LCvx landing exists" }
            );
        }
    }
    Ok(report)
}

/// The lockstep loop over any [`Plant`]: every `period` [s] the plant's measured state is
/// answered by `controller` (stamped `T0 +` plant time), the command applied, the plant advanced,
/// until the plant reports the episode's result. `on_state(x, t)` sees every answered state.
/// The goal must be set.
pub fn fly_plant(
    controller: &mut RecedingHorizon,
    plant: &mut dyn Plant,
    spec: &EpisodeSpec,
    period: f64,
    mut on_state: impl FnMut(&DVector<f64>, f64),
) -> EpisodeReport {
    let mut log = EpisodeLog::default();
    log.state(plant.time(), plant.true_state());
    let before = controller.stats().clone();
    let result = loop {
        // a controller outage: no state reaches the controller, the plant holds its command
        if plant.link_up() {
            let t = T0 + plant.time();
            let x = plant.measured_state();
            let out = controller.step(&StateInput { stamp: t, frame_id: "landing_site".into(), x: x.iter().copied().collect() }, t);
            on_state(&x, plant.time());
            log.answer(out.plan.status, out.plan.solve_time_ms, out.late);
            plant.command(&controller.command(&out.plan));
            plant.sequence(plant.time(), out.plan.dt, &out.plan.u);
        }
        let ended = plant.advance(period).cloned();
        log.state(plant.time(), plant.true_state());
        if let Some(r) = ended {
            break r;
        }
    };
    let after = controller.stats();
    log.correction(after.correction_steps - before.correction_steps, after.finished - before.finished);
    log.retimes(after.retimed - before.retimed);
    log.finish(spec, result, controller.config().deadline_s * 1e3)
}
