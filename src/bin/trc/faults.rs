//! `trc bench faults`: the fault catalogue of the reliability issue (docs/reliability.md), each
//! case fed to the controller core as trc_node feeds it (ROS-free: `RecedingHorizon` with the
//! shipped model and config/descent.yaml, `frame_id` set to `landing_site`), the expected and the
//! observed answer side by side. The cases that need DDS or processes are listed with the test
//! that holds them. Exit status 1 when any observed answer differs from the expected one.

use std::fmt::Write as _;
use std::path::Path;

use trc_control::config::TrcConfig;
use trc_control::control::health::Health;
use trc_control::control::{CycleOutcome, GoalInput, RecedingHorizon, Rejected, StateInput};
use trc_control::model::checkpoint;
use trc_control::plan::PlanStatus;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One row: case, what was sent, expected, observed.
struct Row {
    case: String,
    input: String,
    expected: String,
    observed: String,
}

impl Row {
    fn ok(&self) -> bool {
        self.expected == self.observed
    }
}

const FRAME: &str = "landing_site";
/// A plausible descent state (1.5 km up, 300 m off, descending at 60 m/s).
const X0: [f64; 7] = [300.0, -200.0, 1500.0, 10.0, 5.0, -60.0, 1850.0];

fn answer(out: &CycleOutcome) -> String {
    let finite = out.plan.u.iter().chain(out.plan.x.iter()).all(|v| v.is_finite());
    let status = format!("{:?}", out.plan.status).to_uppercase();
    let status = if status == "FALLBACKSHIFTED" { "FALLBACK_SHIFTED".to_string() } else { status };
    match &out.rejected {
        Some(r) => format!("{status} `{}`{}", r.reason(), if finite { "" } else { ", NON-FINITE plan" }),
        None => format!("{}{}", if out.plan.status == PlanStatus::Failed { "FAILED" } else { "answered" }, if finite { "" } else { ", NON-FINITE plan" }),
    }
}

fn refused(r: Result<(), Rejected>) -> String {
    match r {
        Ok(()) => "accepted".into(),
        Err(e) => format!("refused `{}`", e.reason()),
    }
}

/// Runs the catalogue; returns the markdown fragment and whether every row matched.
pub fn catalogue(root: &Path) -> AnyResult<(String, bool)> {
    let mut cfg = TrcConfig::from_file(root.join("config/descent.yaml"))?;
    cfg.controller.plausibility.frame_id = FRAME.into();
    // the guards, not the timing, are under test: room for the first inference
    cfg.controller.deadline_s = 1.0;
    cfg.node.device = trc_control::config::DeviceChoice::Cpu;
    let mut ctl = RecedingHorizon::from_config(&cfg, Some(root))?;
    let mut rows: Vec<Row> = Vec::new();
    let t0 = 1000.0;
    let goal = GoalInput { frame_id: FRAME.into(), stamp: t0, x_target: vec![0.0; 7], t_go: 40.0 };
    ctl.set_goal_at(&goal, Some(t0)).map_err(|e| format!("the catalogue's own goal was refused: {e}"))?;
    let mut t = t0;
    let state = |ctl: &mut RecedingHorizon, t: &mut f64, x: Vec<f64>, frame: &str, stamp_offset: f64| {
        *t += 0.1;
        ctl.step(&StateInput { stamp: *t + stamp_offset, frame_id: frame.into(), x }, *t)
    };
    // a first good plan to keep
    let first = state(&mut ctl, &mut t, X0.to_vec(), FRAME, 0.0);
    if first.rejected.is_some() || first.plan.status == PlanStatus::Failed {
        return Err(format!("no first plan for the catalogue's state: {:?}", first.rejected).into());
    }
    let kept_stamp = first.plan.stamp;
    let with = |i: usize, v: f64| {
        let mut x = X0.to_vec();
        x[i] = v;
        x
    };
    // (case, input, x, frame, stamp offset [s], expected)
    type StateCase<'a> = (&'a str, String, Vec<f64>, &'a str, f64, &'a str);
    let state_cases: Vec<StateCase<'_>> = vec![
        ("state below the ground", "altitude -100 m".into(), with(2, -100.0), FRAME, 0.0, "FAILED `out_of_range:state altitude above the landing site [m]`"),
        ("state far below the ground", "altitude -1e6 m".into(), with(2, -1e6), FRAME, 0.0, "FAILED `out_of_range:state altitude above the landing site [m]`"),
        ("state too fast", "v_z = -1e6 m/s".into(), with(5, -1e6), FRAME, 0.0, "FAILED `out_of_range:state speed [m/s]`"),
        ("state out of the envelope", "x = 1e9 m".into(), with(0, 1e9), FRAME, 0.0, "FAILED `out_of_range:state distance from the landing site [m]`"),
        ("mass under m_dry", "mass 1000 kg (m_dry 1505)".into(), with(6, 1000.0), FRAME, 0.0, "FAILED `out_of_range:state.x[6] (mass)`"),
        ("mass over m_wet", "mass 2500 kg (m_wet 1905)".into(), with(6, 2500.0), FRAME, 0.0, "FAILED `out_of_range:state.x[6] (mass)`"),
        ("NaN in the state", "x[3] = NaN".into(), with(3, f64::NAN), FRAME, 0.0, "FAILED `non_finite:state.x`"),
        ("infinite state entry", "x[1] = inf".into(), with(1, f64::INFINITY), FRAME, 0.0, "FAILED `non_finite:state.x`"),
        ("wrong length", "3 entries".into(), vec![0.0; 3], FRAME, 0.0, "FAILED `wrong_dimension:state.x`"),
        ("stale state", "stamped 10 s before now".into(), X0.to_vec(), FRAME, -10.0, "FAILED `stale`"),
        ("state from the future", "stamped 10 s after now".into(), X0.to_vec(), FRAME, 10.0, "FAILED `stale`"),
        ("state in another frame", "frame_id `map`".into(), X0.to_vec(), "map", 0.0, "FAILED `wrong_frame:state`"),
    ];
    for (case, input, x, frame, offset, expected) in state_cases {
        let out = state(&mut ctl, &mut t, x, frame, offset);
        rows.push(Row { case: case.into(), input, expected: expected.into(), observed: answer(&out) });
    }
    // out of order: a state stamped before the last answered one (the kept plan's)
    let out = ctl.step(&StateInput { stamp: kept_stamp - 5.0, frame_id: FRAME.into(), x: X0.to_vec() }, kept_stamp - 5.0);
    rows.push(Row {
        case: "time jumped backwards".into(),
        input: "stamped 5 s before the last answer".into(),
        expected: "FAILED `out_of_order`".into(),
        observed: answer(&out),
    });
    rows.push(Row {
        case: "the last good plan is kept".into(),
        input: "after every refusal above".into(),
        expected: format!("plan of stamp {kept_stamp:.1}"),
        observed: ctl.last_plan().map(|p| format!("plan of stamp {:.1}", p.stamp)).unwrap_or_else(|| "no plan".into()),
    });
    // goals: each refused, the goal in force stays
    let g = |x_target: Vec<f64>, t_go: f64, stamp: f64, frame: &str| GoalInput { frame_id: frame.into(), stamp, x_target, t_go };
    let now = t;
    let goal_cases: Vec<(&str, &str, GoalInput, &str)> = vec![
        ("t_go too long", "t_go = 1e4 s", g(vec![0.0; 7], 1e4, now, FRAME), "refused `out_of_range:goal.t_go`"),
        ("t_go too short", "t_go = 0.01 s at 1500 m", g(vec![0.0; 7], 0.01, now, FRAME), "refused `out_of_range:goal.t_go`"),
        ("goal from the future", "stamped 1 h ahead", g(vec![0.0; 7], 40.0, now + 3600.0, FRAME), "refused `future_goal`"),
        (
            "target out of the envelope",
            "target 1e9 m away",
            g(vec![1e9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 40.0, now, FRAME),
            "refused `out_of_range:goal target distance from the frame's origin [m]`",
        ),
        (
            "target moving",
            "target v_z = -1e3 m/s",
            g(vec![0.0, 0.0, 0.0, 0.0, 0.0, -1e3, 0.0], 40.0, now, FRAME),
            "refused `out_of_range:goal target speed [m/s]`",
        ),
        (
            "goal in another frame",
            "frame_id `not_the_site`",
            g(vec![30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 40.0, now, "not_the_site"),
            "refused `wrong_frame:goal`",
        ),
        ("NaN in the goal", "x_target[0] = NaN", g(vec![f64::NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 40.0, now, FRAME), "refused `non_finite:goal.x_target`"),
    ];
    for (case, input, goal, expected) in goal_cases {
        rows.push(Row { case: case.into(), input: input.into(), expected: expected.into(), observed: refused(ctl.set_goal_at(&goal, Some(now))) });
    }
    let out = state(&mut ctl, &mut t, X0.to_vec(), FRAME, 0.0);
    rows.push(Row {
        case: "the goal in force stays".into(),
        input: "a plausible state after the refused goals".into(),
        expected: "answered".into(),
        observed: answer(&out),
    });
    // a flood of new goals: the first taken, the next 0.1 s later refused
    let (a, b) = (g(vec![30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 40.0, t, FRAME), g(vec![-30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 40.0, t + 0.1, FRAME));
    rows.push(Row {
        case: "a new goal".into(),
        input: "target moved 30 m".into(),
        expected: "accepted".into(),
        observed: refused(ctl.set_goal_at(&a, Some(t))),
    });
    rows.push(Row {
        case: "new goals too fast".into(),
        input: "another new target 0.1 s later".into(),
        expected: "refused `goal_rate_limited`".into(),
        observed: refused(ctl.set_goal_at(&b, Some(t + 0.1))),
    });
    // diagnostics: a FAILED streak is an ERROR
    let mut health = Health::default();
    health.set_goal(Some(0.0));
    for k in 0..25 {
        let out = state(&mut ctl, &mut t, vec![f64::NAN; 7], FRAME, 0.0);
        health.record(&out, k as f64 * 0.1);
    }
    let h = health.report(2.5, true, 1.0);
    rows.push(Row {
        case: "25 FAILED answers in a row".into(),
        input: "NaN states".into(),
        expected: "/diagnostics level 2 (ERROR), reason `non_finite:state.x`".into(),
        observed: format!(
            "/diagnostics level {} ({}), reason `{}`",
            h.level,
            ["OK", "WARN", "ERROR"].get(h.level as usize).unwrap_or(&"?"),
            h.last_failure.map(|f| f.0).unwrap_or_default()
        ),
    });
    // checkpoints: corrupt copies of the shipped model are refused at load
    let dir = std::env::temp_dir().join(format!("trc-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (vs, _model, card) = checkpoint::load(&root.join("models/descent"), tch::Device::Cpu, None)?;
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let saved: Vec<tch::Tensor> = vars.iter().map(|(_, v)| v.copy()).collect();
    let restore = || tch::no_grad(|| vars.iter().zip(&saved).for_each(|((_, v), s)| v.shallow_clone().copy_(s)));
    let try_load = |card: &checkpoint::ModelCard, name: &str| -> String {
        let stem = dir.join(name);
        match checkpoint::save(&stem, &vs, card)
            .map_err(|e| e.to_string())
            .and_then(|_| checkpoint::load(&stem, tch::Device::Cpu, None).map(|_| ()).map_err(|e| e.to_string()))
        {
            Ok(()) => "loaded".into(),
            Err(e) if e.contains("unusable") => "refused at load (unusable)".into(),
            Err(e) => format!("refused: {e}"),
        }
    };
    let _ = tch::no_grad(|| vars[0].1.get(0).fill_(f64::NAN));
    rows.push(Row {
        case: "checkpoint with NaN weights".into(),
        input: format!("`{}`[0] = NaN", vars[0].0),
        expected: "refused at load (unusable)".into(),
        observed: try_load(&card, "nan"),
    });
    restore();
    tch::no_grad(|| vars.iter().zip(&saved).for_each(|((_, v), s)| v.shallow_clone().copy_(&(s * 1e30))));
    rows.push(Row {
        case: "checkpoint with weights x 1e30".into(),
        input: "every weight x 1e30".into(),
        expected: "refused at load (unusable)".into(),
        observed: try_load(&card, "huge"),
    });
    restore();
    for (name, bad) in [("x_std 0", 0.0), ("x_std NaN", f64::NAN)] {
        let mut c = card.clone();
        c.normalizer.x_std[0] = bad;
        rows.push(Row {
            case: format!("checkpoint normalizer {name}"),
            input: format!("x_std[0] = {bad}"),
            expected: "refused at load (unusable)".into(),
            observed: try_load(&c, "std"),
        });
    }
    rows.push(Row {
        case: "the healthy checkpoint".into(),
        input: "models/descent, saved again".into(),
        expected: "loaded".into(),
        observed: try_load(&card, "healthy"),
    });
    let _ = std::fs::remove_dir_all(&dir);
    // configuration
    let mut bad = cfg.controller.clone();
    bad.deadline_s = 1e-6;
    rows.push(Row {
        case: "deadline of a microsecond".into(),
        input: "controller.deadline_s = 1e-6".into(),
        expected: "refused".into(),
        observed: match ctl.set_config(bad) {
            Ok(()) => "accepted".into(),
            Err(_) => "refused".into(),
        },
    });

    let all_ok = rows.iter().all(Row::ok);
    let mut md = String::from(
        "## Fault catalogue\n\nCommand: `trc bench faults` (ROS-free: the controller core with the shipped model and `config/descent.yaml`, `controller.plausibility.frame_id: landing_site`, deadline 1 s; docs/reliability.md). Each case is fed as trc_node feeds it, after a goal (t_go 40 s) and a first good plan from a plausible state.\n\n| case | input | expected | observed | |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        let _ = writeln!(md, "| {} | {} | {} | {} | {} |", r.case, r.input, r.expected, r.observed, if r.ok() { "ok" } else { "**differs**" });
    }
    md.push_str(
        "\nOver DDS and between processes (tests, run by `make test`): 1 kHz of states for 4 s, /diagnostics every 0.5 s and ERROR naming the reason (`tests/diagnostics_dds.rs`); answers stamped with their state's exact Time, and `trc launch` stopping its nodes on SIGTERM (`tests/process.rs`); unknown parameters refused as unknown, refused updates logged (`tests/params.rs`, `src/ros/params.rs`); the node answering the bag's faults with their reasons (`tests/rosbag.rs`). Any sequence of inputs is answered with a finite plan (`tests/fuzz_inputs.rs`, `make fuzz`).\n",
    );
    Ok((md, all_ok))
}

/// Writes the catalogue to `out`.
///
/// # Errors
/// A case whose observed answer differs from the expected one, or a setup failure.
pub fn faults(out: &Path) -> AnyResult<()> {
    let (md, ok) = catalogue(&crate::launcher::package_root())?;
    print!("{md}");
    crate::bench::write_out(out, &md)?;
    if ok {
        Ok(())
    } else {
        Err("a fault-catalogue case differs from what is expected (see the table)".into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_case_of_the_fault_catalogue_is_answered_as_expected() {
        let (md, ok) = super::catalogue(&crate::launcher::package_root()).expect("the catalogue runs");
        assert!(ok, "{md}");
        assert!(md.matches("| ok |").count() >= 30, "{md}");
    }
}
