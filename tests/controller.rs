//! The receding-horizon controller (ROS-free): deadline -> FALLBACK_SHIFTED with a correctly
//! shifted sequence, delays between iterations -> ANYTIME, every guard -> FAILED with its reason,
//! a finite safe command and the last good plan kept. Uses the shipped double-integrator model
//! (fixed dt, so "shifted by one step" is exact) behind a policy with adjustable delays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nalgebra::DVector;
use tch::Device;
use trc_control::config::TrcConfig;
use trc_control::control::{ControllerConfig, GoalInput, InferenceWorker, Iterate, PlanRequest, Policy, PolicyError, RecedingHorizon, Rejected, StateInput, TrcPolicy};
use trc_control::plan::PlanStatus;

/// TRC with delays [us] read at every call (so a test can change them between cycles).
struct Delayed {
    inner: TrcPolicy,
    before_us: Arc<AtomicU64>,
    between_us: Arc<AtomicU64>,
}

impl Policy for Delayed {
    fn name(&self) -> String {
        format!("delayed {}", self.inner.name())
    }
    fn problem(&self) -> &trc_control::config::ProblemConfig {
        self.inner.problem()
    }
    fn iterations(&self) -> u32 {
        self.inner.iterations()
    }
    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        std::thread::sleep(Duration::from_micros(self.before_us.load(Ordering::SeqCst)));
        let between = Duration::from_micros(self.between_us.load(Ordering::SeqCst));
        self.inner.refine(req, &mut |it| {
            std::thread::sleep(between);
            on_iterate(it)
        })
    }
}

fn root() -> String {
    env!("CARGO_MANIFEST_DIR").to_string()
}

fn di_config() -> TrcConfig {
    TrcConfig::from_file(format!("{}/config/double_integrator.yaml", root())).unwrap()
}

const DEADLINE_S: f64 = 0.25;

fn controller(before_us: Arc<AtomicU64>, between_us: Arc<AtomicU64>) -> RecedingHorizon {
    let cfg = di_config();
    let problem = cfg.problem.clone();
    let worker = InferenceWorker::spawn(move || {
        let inner = TrcPolicy::load(std::path::Path::new(&format!("{}/models/double_integrator", root())), &problem, Device::Cpu, None)?;
        Ok(Delayed { inner, before_us, between_us })
    })
    .map_err(|e| e.to_string());
    let ctl = ControllerConfig { deadline_s: DEADLINE_S, max_state_age_s: 0.5, ..Default::default() };
    RecedingHorizon::new(&cfg.problem, ctl, worker).unwrap()
}

fn state(stamp: f64, x: &[f64]) -> StateInput {
    StateInput { stamp, frame_id: "world".into(), x: x.to_vec() }
}

fn goal() -> GoalInput {
    GoalInput { stamp: 100.0, x_target: vec![0.0, 0.0], t_go: 0.0 }
}

fn finite(u: &nalgebra::DMatrix<f64>) -> bool {
    u.iter().all(|v| v.is_finite())
}

#[test]
fn deadline_overrun_publishes_the_shifted_previous_plan_on_time() {
    let (before, between) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut ctl = controller(before.clone(), between);
    ctl.set_goal(&goal()).unwrap();
    let t0 = 100.0;
    let first = ctl.step(&state(t0, &[1.0, -0.5]), t0);
    assert_eq!(first.plan.status, PlanStatus::Converged, "{:?}", first.rejected);
    let p0 = first.plan.clone();
    let dt = p0.dt;
    assert!((dt - 0.1).abs() < 1e-12);
    // inference now takes 3 deadlines: every cycle must still answer by its deadline
    before.store((3.0 * DEADLINE_S * 1e6) as u64, Ordering::SeqCst);
    for k in 1..=3usize {
        let stamp = t0 + k as f64 * dt;
        let started = Instant::now();
        let out = ctl.step(&state(stamp, &[1.0 - 0.05 * k as f64, -0.5]), stamp);
        let took = started.elapsed().as_secs_f64();
        assert!(took < DEADLINE_S + 0.05, "cycle {k} answered after {took:.3} s (deadline {DEADLINE_S} s)");
        assert!(!out.late, "cycle {k} flagged late");
        assert_eq!(out.plan.status, PlanStatus::FallbackShifted, "cycle {k}");
        assert_eq!(out.plan.stamp, stamp, "stamped with the answered state's time");
        assert_eq!(out.plan.dt, dt);
        let n = p0.u.nrows();
        for j in 0..n {
            let src = (j + k).min(n - 1);
            assert_eq!(out.plan.u.row(j), p0.u.row(src), "cycle {k}: control {j} must be the first plan's control {src}");
        }
        assert!(finite(&out.plan.u) && finite(&out.plan.x));
        assert_eq!(out.plan.x.row(0).transpose(), DVector::from_vec(vec![1.0 - 0.05 * k as f64, -0.5]), "prediction starts at the answered state");
    }
    assert_eq!(ctl.stats().fallback, 3);
}

#[test]
fn delay_between_iterations_gives_anytime_iterates() {
    let (before, between) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut ctl = controller(before, between.clone());
    ctl.set_goal(&goal()).unwrap();
    // each outer iteration now takes 0.6 deadlines: iterate 1 is in time, iterate 2 is not
    between.store((0.6 * DEADLINE_S * 1e6) as u64, Ordering::SeqCst);
    let out = ctl.step(&state(200.0, &[0.5, 0.5]), 200.0);
    assert_eq!(out.plan.status, PlanStatus::Anytime, "{:?}", out.rejected);
    assert_eq!(out.plan.iterations, 1);
    assert!(finite(&out.plan.u));
    assert!(out.plan.u.iter().all(|u| u.abs() <= 1.0 + 1e-9), "anytime iterates are projected too");
}

#[test]
fn guards_fail_safe_with_a_reason_and_keep_the_last_plan() {
    let (before, between) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut ctl = controller(before, between);
    // no goal yet
    let out = ctl.step(&state(10.0, &[1.0, 0.0]), 10.0);
    assert_eq!(out.plan.status, PlanStatus::Failed);
    assert_eq!(out.rejected, Some(Rejected::NoGoal));
    assert!(out.rejected.unwrap().to_string().contains("publish a Goal"));
    assert!(out.plan.u.iter().all(|u| *u == 0.0), "the double integrator's safe command is u = 0");
    ctl.set_goal(&goal()).unwrap();
    let good = ctl.step(&state(10.0, &[1.0, 0.0]), 10.0);
    assert_eq!(good.plan.status, PlanStatus::Converged);
    let kept = ctl.last_plan().cloned().unwrap();
    let cases: Vec<(StateInput, f64, &str)> = vec![
        (state(10.1, &[1.0, 0.0, 3.0]), 10.1, "needs n = 2"),
        (state(10.1, &[f64::NAN, 0.0]), 10.1, "state.x[0] is NaN"),
        (state(10.1, &[1.0, f64::INFINITY]), 10.1, "state.x[1] is inf"),
        (state(9.0, &[1.0, 0.0]), 10.1, "stale state"),
        (state(f64::NAN, &[1.0, 0.0]), 10.1, "stale state"),
        (state(11.0, &[1.0, 0.0]), 10.1, "stale state"),
    ];
    for (s, now, msg) in cases {
        let out = ctl.step(&s, now);
        assert_eq!(out.plan.status, PlanStatus::Failed, "{msg}");
        let text = out.rejected.as_ref().map(|r| r.to_string()).unwrap_or_default();
        assert!(text.contains(msg), "log line `{text}` should say `{msg}`");
        assert!(finite(&out.plan.u) && finite(&out.plan.x), "{msg}: never a NaN command");
        assert_eq!(ctl.last_plan(), Some(&kept), "{msg}: the last good plan is kept");
    }
    // bad goals are refused and the old goal stays
    assert!(matches!(ctl.set_goal(&GoalInput { stamp: 0.0, x_target: vec![0.0], t_go: 0.0 }), Err(Rejected::WrongDimension { .. })));
    assert!(matches!(ctl.set_goal(&GoalInput { stamp: 0.0, x_target: vec![f64::NAN, 0.0], t_go: 0.0 }), Err(Rejected::NonFinite { .. })));
    let next = ctl.step(&state(10.2, &[0.9, 0.0]), 10.2);
    assert_eq!(next.plan.status, PlanStatus::Converged, "a good state after bad ones is answered normally");
}

#[test]
fn a_model_for_another_problem_is_refused_and_the_node_fails_safe() {
    let cfg = di_config();
    let problem = cfg.problem.clone();
    let worker = InferenceWorker::spawn(move || TrcPolicy::load(std::path::Path::new(&format!("{}/models/vanderpol", root())), &problem, Device::Cpu, None)).map_err(|e| e.to_string());
    let err = worker.as_ref().err().cloned().expect("a Van der Pol model must not load for the double integrator");
    assert!(err.contains("vanderpol") && err.contains("double_integrator"), "{err}");
    let mut ctl = RecedingHorizon::new(&cfg.problem, ControllerConfig::default(), worker).unwrap();
    ctl.set_goal(&goal()).unwrap();
    let out = ctl.step(&state(1.0, &[1.0, 0.0]), 1.0);
    assert_eq!(out.plan.status, PlanStatus::Failed);
    assert!(matches!(out.rejected, Some(Rejected::NoPolicy(_))));
    assert!(finite(&out.plan.u));
}
