//! Closed-loop episodes in one process (ROS-free): the receding-horizon controller and the
//! plant in lockstep at the control rate. The benchmark's many seeded episodes run here (sim
//! time advances as fast as the controller answers; each answer is still held to its wall-clock
//! deadline); `make demo` flies the same episodes over DDS with `trc_sim` and `trc_node`.

use nalgebra::DVector;
use serde::Serialize;

use crate::config::{ProblemConfig, ProblemKind};
use crate::control::{GoalInput, RecedingHorizon, StateInput};
use crate::data::{sample_instance, Split};
use crate::error::ConfigError;
use crate::plan::PlanStatus;
use crate::plant::{EpisodeResult, Plant, SimConfig};
use crate::solvers::{self, Instance, SolverSettings};

/// ROS time at which lockstep episodes start [s] (any positive base works; 0 means "unset" in ROS).
pub const T0: f64 = 1000.0;

/// One episode's initial condition and its optimum.
#[derive(Debug, Clone, Serialize)]
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
    let mut solver = solvers::for_problem(problem, SolverSettings::default().with_time_limit(60.0)).map_err(|e| e.to_string())?;
    let sol = solver.solve(&Instance { t_go: None, ..inst.clone() }).map_err(|e| e.to_string())?;
    let n = sol.x.nrows() - 1;
    let fuel = if problem.name == ProblemKind::Descent { inst.x0[6] - sol.x[(n, 6)] } else { 0.0 };
    Ok(EpisodeSpec { index, x0: inst.x0.iter().copied().collect(), x_target: inst.x_target.iter().copied().collect(), t_go: sol.t_go, cost_opt: sol.cost, fuel_opt_kg: fuel })
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
/// (`2 N dt`) and are judged at the end; both within `sim.max_time_s`.
pub fn episode_sim(problem: &ProblemConfig, sim: &SimConfig, spec: &EpisodeSpec) -> SimConfig {
    let mut s = sim.clone();
    s.max_time_s = s.max_time_s.min(if problem.name == ProblemKind::Descent { spec.t_go + GRACE_S } else { 2.0 * spec.t_go });
    s
}

/// What one closed-loop episode produced.
#[derive(Debug, Clone, Serialize)]
pub struct ClosedLoopReport {
    /// Plant result (touchdown error, speed, fuel, success).
    pub result: EpisodeResult,
    /// Propellant above the optimum, relative (descent).
    pub fuel_gap: f64,
    /// Cycles per status: CONVERGED, ANYTIME, FALLBACK_SHIFTED (deadline), FAILED, terminal phase.
    pub counts: [u64; 5],
    /// Answers later than the deadline.
    pub late: u64,
    /// Solve times of the refined cycles [ms].
    pub solve_ms: Vec<f64>,
    /// True trajectory at the control rate: `(t, x)`.
    pub trajectory: Vec<(f64, Vec<f64>)>,
}

/// Flies `spec` with `controller` against a [`Plant`] in lockstep at `sim.rate_hz`.
///
/// # Errors
/// [`ConfigError`] for an invalid configuration.
pub fn fly(controller: &mut RecedingHorizon, problem: &ProblemConfig, sim: &SimConfig, spec: &EpisodeSpec) -> Result<ClosedLoopReport, ConfigError> {
    fly_recording(controller, problem, sim, spec, None)
}

/// [`fly`], also recording every answered state with its time-to-go, `(x, t_go)` (descent: the
/// shrinking t_go; others N dt): the states the policy visits in closed loop (DAgger).
///
/// # Errors
/// As [`fly`].
pub fn fly_recording(controller: &mut RecedingHorizon, problem: &ProblemConfig, sim: &SimConfig, spec: &EpisodeSpec, mut record: Option<&mut Vec<(Vec<f64>, f64)>>) -> Result<ClosedLoopReport, ConfigError> {
    let x0 = DVector::from_column_slice(&spec.x0);
    let xt = DVector::from_column_slice(&spec.x_target);
    let mut plant = Plant::new(problem, &episode_sim(problem, sim, spec), x0, xt, spec.index)?;
    let goal_t_go = if problem.name == ProblemKind::Descent { spec.t_go } else { 0.0 };
    controller.set_goal(&GoalInput { stamp: T0, x_target: spec.x_target.clone(), t_go: goal_t_go }).map_err(|e| ConfigError::invalid("goal", e.to_string()))?;
    let period = 1.0 / sim.rate_hz;
    let mut counts = [0u64; 5];
    let mut late = 0;
    let mut solve_ms = Vec::new();
    let mut trajectory = vec![(0.0, plant.true_state().iter().copied().collect())];
    loop {
        let t = T0 + plant.time();
        let x = plant.measured_state();
        let out = controller.step(&StateInput { stamp: t, frame_id: "landing_site".into(), x: x.iter().copied().collect() }, t);
        if let Some(rec) = record.as_deref_mut() {
            rec.push((x.iter().copied().collect(), if problem.name == ProblemKind::Descent { spec.t_go - plant.time() } else { spec.t_go }));
        }
        let idx = if out.terminal { 4 } else { out.plan.status as usize };
        counts[idx] += 1;
        late += u64::from(out.late);
        if matches!(out.plan.status, PlanStatus::Converged | PlanStatus::Anytime) || (out.plan.status == PlanStatus::FallbackShifted && !out.terminal) {
            solve_ms.push(out.plan.solve_time_ms);
        }
        plant.command(&controller.command(&out.plan));
        let done = plant.advance(period).is_some();
        trajectory.push((plant.time(), plant.true_state().iter().copied().collect()));
        if done {
            break;
        }
    }
    let result = plant.result().cloned().expect("episode ended");
    let fuel_gap = if spec.fuel_opt_kg > 0.0 { result.fuel_kg / spec.fuel_opt_kg - 1.0 } else { 0.0 };
    Ok(ClosedLoopReport { result, fuel_gap, counts, late, solve_ms, trajectory })
}
