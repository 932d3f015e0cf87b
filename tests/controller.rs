//! The receding-horizon controller with the shipped checkpoints (the generic cycle itself is
//! unit-tested beside its code, `src/control/receding.rs`, with a replay policy): a model for
//! another problem is refused and the controller fails safe with the reason; the shipped
//! double-integrator model answers CONVERGED within its deadline, admissible, and a missed
//! deadline falls back to its plan shifted by exactly one step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tch::Device;
use trc_control::config::TrcConfig;
use trc_control::control::{ControllerConfig, GoalInput, Iterate, PlanRequest, Policy, PolicyError, RecedingHorizon, Rejected, StateInput, TrcPolicy};
use trc_control::plan::PlanStatus;

fn root() -> String {
    env!("CARGO_MANIFEST_DIR").to_string()
}

fn di_config() -> TrcConfig {
    TrcConfig::from_file(format!("{}/config/double_integrator.yaml", root())).unwrap()
}

fn state(stamp: f64, x: &[f64]) -> StateInput {
    StateInput { stamp, frame_id: "world".into(), x: x.to_vec() }
}

fn goal() -> GoalInput {
    GoalInput { frame_id: String::new(), stamp: 100.0, x_target: vec![0.0, 0.0], t_go: 0.0 }
}

/// The shipped TRC policy with a delay before refining [us], read at every call.
struct Delayed {
    inner: TrcPolicy,
    before_us: Arc<AtomicU64>,
}

impl Policy for Delayed {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn problem(&self) -> &trc_control::config::ProblemConfig {
        self.inner.problem()
    }
    fn iterations(&self) -> u32 {
        self.inner.iterations()
    }
    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        std::thread::sleep(Duration::from_micros(self.before_us.load(Ordering::SeqCst)));
        self.inner.refine(req, on_iterate)
    }
}

#[test]
fn the_shipped_model_converges_and_a_missed_deadline_shifts_its_plan() {
    let cfg = di_config();
    let problem = cfg.problem.clone();
    let before = Arc::new(AtomicU64::new(0));
    let b = before.clone();
    // no cost refinement after the network: the shifted plan must be the first plan, shifted
    let ctl_cfg = ControllerConfig { deadline_s: 0.25, cost_refinement_steps: 0, ..Default::default() };
    let mut ctl = RecedingHorizon::with_policy(&cfg.problem, ctl_cfg, move || {
        let inner = TrcPolicy::load(std::path::Path::new(&format!("{}/models/double_integrator", root())), &problem, Device::Cpu, None)?;
        Ok(Delayed { inner, before_us: b })
    })
    .unwrap();
    ctl.set_goal(&goal()).unwrap();
    let first = ctl.step(&state(100.0, &[1.0, -0.5]), 100.0);
    assert_eq!(first.plan.status, PlanStatus::Converged, "{:?} {:?}", first.rejected, first.policy_error);
    assert!(first.plan.u.iter().all(|u| u.is_finite() && u.abs() <= 1.0 + 1e-9), "admissible: |u| <= 1");
    before.store(750_000, Ordering::SeqCst);
    let out = ctl.step(&state(100.1, &[0.95, -0.5]), 100.1);
    assert_eq!(out.plan.status, PlanStatus::FallbackShifted);
    assert!(!out.late);
    for j in 0..50 {
        assert_eq!(out.plan.u[(j, 0)], first.plan.u[((j + 1).min(49), 0)], "control {j}");
    }
}

#[test]
fn a_model_for_another_problem_is_refused_and_the_controller_fails_safe() {
    let cfg = di_config();
    let problem = cfg.problem.clone();
    let mut ctl = RecedingHorizon::with_policy(&cfg.problem, ControllerConfig::default(), move || {
        TrcPolicy::load(std::path::Path::new(&format!("{}/models/vanderpol", root())), &problem, Device::Cpu, None)
    })
    .unwrap();
    let err = ctl.policy_name();
    assert!(
        !ctl.has_policy() && err.contains("vanderpol") && err.contains("double_integrator"),
        "a Van der Pol model must not load for the double integrator: {err}"
    );
    ctl.set_goal(&goal()).unwrap();
    let out = ctl.step(&state(1.0, &[1.0, 0.0]), 1.0);
    assert_eq!(out.plan.status, PlanStatus::Failed);
    assert!(matches!(out.rejected, Some(Rejected::NoPolicy(_))));
    assert!(out.plan.u.iter().all(|u| u.is_finite()));
}
