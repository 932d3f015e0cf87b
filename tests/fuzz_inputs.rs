//! Property tests over the node's inputs (issue: reliability), ROS-free: any sequence of states
//! and goals (any length, NaN, infinities, huge values, any stamps and frames) is answered with a
//! finite plan of the problem's shape and never panics; the CDR decoding of the controller's
//! messages never panics on arbitrary bytes and round-trips what it encodes; a config with any
//! value at any controller key parses or is refused naming the key.
//!
//! Cases per property: 64 (CI); `PROPTEST_CASES=N` runs more (the long fuzz: `make fuzz`).

use proptest::prelude::*;
use trc_control::bag::msgs::{from_cdr, to_cdr, types, GoalMsg, Header, StateMsg, Time};
use trc_control::config::{ControllerConfig, ProblemConfig, ProblemKind, TrcConfig};
use trc_control::control::{GoalInput, RecedingHorizon, StateInput, ZemZevPolicy};
use trc_control::plan::PlanStatus;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64)
}

/// A float from every corner: ordinary descent magnitudes, tiny, huge, negative, non-finite.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -3000.0..3000.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => prop::num::f64::ANY,
        1 => -1e12..1e12f64,
    ]
}

/// A plausible descent state with one entry (maybe) replaced by a corner value, or a vector of
/// any length.
fn state_x() -> impl Strategy<Value = Vec<f64>> {
    let plausible = (-800.0..800.0f64, -800.0..800.0f64, 200.0..2500.0f64, -40.0..40.0f64, -40.0..40.0f64, -80.0..-5.0f64, 1600.0..1905.0f64)
        .prop_map(|(a, b, c, d, e, f, g)| vec![a, b, c, d, e, f, g]);
    prop_oneof![
        3 => plausible.clone(),
        3 => (plausible, 0..7usize, value()).prop_map(|(mut x, i, v)| { x[i] = v; x }),
        1 => prop::collection::vec(value(), 0..10),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    State { dt: f64, x: Vec<f64>, frame: bool },
    Goal { x_target: Vec<f64>, t_go: f64, lead: f64, frame: bool },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => (prop_oneof![6 => Just(0.1), 1 => -5.0..5.0f64, 1 => value()], state_x(), any::<bool>()).prop_map(|(dt, x, frame)| Input::State { dt, x, frame }),
        1 => (
            prop_oneof![3 => Just(vec![0.0; 7]), 1 => prop::collection::vec(value(), 0..10)],
            prop_oneof![2 => 10.0..60.0f64, 1 => value()],
            prop_oneof![3 => Just(0.0), 1 => value()],
            any::<bool>()
        )
            .prop_map(|(x_target, t_go, lead, frame)| Input::Goal { x_target, t_go, lead, frame }),
    ]
}

fn controller() -> RecedingHorizon {
    let problem = ProblemConfig::new(ProblemKind::Descent);
    let mut cfg = ControllerConfig { deadline_s: 0.05, ..Default::default() };
    cfg.plausibility.frame_id = "landing_site".into();
    let p = problem.clone();
    RecedingHorizon::with_policy(&problem, cfg, move || ZemZevPolicy::new(&p)).expect("controller")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_inputs_are_answered_with_finite_plans_of_the_problems_shape(inputs in prop::collection::vec(input(), 1..40)) {
        let mut ctl = controller();
        let mut t = 1000.0;
        // a valid goal first, so that plans (not only refusals) are exercised
        ctl.set_goal_at(&GoalInput { frame_id: "landing_site".into(), stamp: t, x_target: vec![0.0; 7], t_go: 40.0 }, Some(t)).unwrap();
        for i in inputs {
            match i {
                Input::State { dt, x, frame } => {
                    t += if dt.is_finite() { dt } else { 0.1 };
                    let stamp = if dt.is_finite() { t } else { dt };
                    let s = StateInput { stamp, frame_id: if frame { "landing_site".into() } else { "map".into() }, x };
                    let out = ctl.step(&s, t);
                    prop_assert!(out.plan.u.iter().all(|v| v.is_finite()), "non-finite control for {s:?}");
                    prop_assert!(out.plan.x.iter().all(|v| v.is_finite()), "non-finite trajectory for {s:?}");
                    prop_assert_eq!((out.plan.u.nrows(), out.plan.u.ncols()), (50, 3));
                    prop_assert!(out.rejected.is_none() || out.plan.status == PlanStatus::Failed, "a refusal is FAILED");
                }
                Input::Goal { x_target, t_go, lead, frame } => {
                    let g = GoalInput { frame_id: if frame { "landing_site".into() } else { "other".into() }, stamp: t + lead, x_target, t_go };
                    // refused or taken, never a panic
                    let _ = ctl.set_goal_at(&g, Some(t));
                }
            }
        }
    }

    #[test]
    fn cdr_decoding_never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..256), x in prop::collection::vec(value(), 0..12), sec in any::<i32>(), nanosec in 0..1_000_000_000u32, frame in "[a-z_]{0,12}") {
        let _ = from_cdr::<StateMsg>(types::STATE, &bytes);
        let _ = from_cdr::<GoalMsg>(types::GOAL, &bytes);
        let m = StateMsg { header: Header { stamp: Time { sec, nanosec }, frame_id: frame }, x };
        let back: StateMsg = from_cdr(types::STATE, &to_cdr(types::STATE, &m).unwrap()).unwrap();
        // bitwise: NaN payloads too
        prop_assert_eq!(back.header, m.header);
        prop_assert_eq!(back.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), m.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn any_value_at_a_controller_key_parses_or_is_refused_by_name(key in prop::sample::select(vec![
        "deadline_s", "max_state_age_s", "terminal_phase_s", "outer", "warm_start", "command_hold_s", "gate_altitude_m",
        "gate_sink_rate_mps", "disturbance_observer_s", "position_filter_gain", "warm_correction", "cost_refinement_steps",
    ]), value in prop_oneof![
        Just("-1".to_string()), Just("0".to_string()), Just("1e308".to_string()), Just(".nan".to_string()), Just(".inf".to_string()),
        Just("true".to_string()), Just("\"text\"".to_string()), Just("[1, 2]".to_string()), Just("{a: 1}".to_string()), Just("~".to_string()),
        (-1e6..1e6f64).prop_map(|v| format!("{v}")),
    ]) {
        let text = format!("problem:\n  name: descent\ncontroller:\n  {key}: {value}\n");
        match TrcConfig::from_yaml_str(&text) {
            Ok(cfg) => prop_assert!(cfg.controller.validate().is_ok()),
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains(key), "the refusal of {key}: {value} does not name the key: {e}");
            }
        }
    }
}
