//! `trc closed-loop`: seeded closed-loop episodes in one process (controller and plant in
//! lockstep, every answer held to its wall-clock deadline), with a per-episode table, a summary,
//! and a trajectory plot; and the table / plot of `trc demo` (episodes flown over DDS).

use std::fmt::Write as _;
use std::path::Path;

use trc_control::closed_loop::{episodes_for, fly, percentile, EpisodeReport};
use trc_control::config::{ProblemKind, TrcConfig};
use trc_control::control::RecedingHorizon;
use trc_control::plot::{Panel, Series};
use trc_control::scenario::Scenario;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Markdown table of episodes plus a summary line.
pub fn table(kind: ProblemKind, rows: &[EpisodeReport]) -> String {
    let mut md = String::new();
    if kind == ProblemKind::Descent {
        md.push_str("| episode | result | touchdown error [m] | speed [m/s] | below glide slope [m] | fuel [kg] | optimum [kg] | fuel gap | solve p50 / p99 [ms] | ANYTIME | FALLBACK_SHIFTED | FAILED | TERMINAL | late | correction GN steps per plan | landing-time moves |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:+.2}% | {:.2} / {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                r.spec.index,
                outcome(&r.result),
                r.result.position_error,
                r.result.speed,
                r.result.glide_slope_violation_m,
                r.result.fuel_kg,
                r.spec.fuel_opt_kg,
                r.fuel_gap * 100.0,
                r.solve_ms_p50,
                r.solve_ms_p99,
                r.anytime,
                r.fallback_shifted,
                r.failed,
                r.terminal,
                r.late,
                if r.correction_steps_per_plan.is_finite() { format!("{:.2}", r.correction_steps_per_plan) } else { "-".into() },
                r.retimes
            );
        }
    } else {
        md.push_str(
            "| episode | result | final error | solve p50 / p99 [ms] | ANYTIME | FALLBACK_SHIFTED | FAILED | late |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.2} / {:.2} | {} | {} | {} | {} |",
                r.spec.index,
                if r.result.success { "success" } else { "fail" },
                r.result.position_error,
                r.solve_ms_p50,
                r.solve_ms_p99,
                r.anytime,
                r.fallback_shifted,
                r.failed,
                r.late
            );
        }
    }
    md
}

/// A descent episode's result in a word or two: `landed`, or `missed` with the violated
/// constraint when the touchdown itself was inside the tolerances.
pub fn outcome(r: &trc_control::plant::EpisodeResult) -> String {
    if r.success {
        return "landed".into();
    }
    let mut why = Vec::new();
    if r.thrust_violation > 1e-6 {
        why.push("thrust bound");
    }
    if r.pointing_violation_deg > 1e-4 {
        why.push("pointing");
    }
    if why.is_empty() && r.touched_down && r.position_error < 1.0 && r.speed < 0.5 {
        // inside the touchdown tolerances and every command admissible: the cone was left
        why.push("glide slope");
    }
    if why.is_empty() {
        "missed".into()
    } else {
        format!("missed ({})", why.join(", "))
    }
}

/// Summary numbers over episodes: (success rate, mean fuel gap, median fuel gap, median position error, median speed).
pub fn summary(rows: &[EpisodeReport]) -> (f64, f64, f64, f64, f64) {
    let n = rows.len().max(1) as f64;
    let gaps: Vec<f64> = rows.iter().map(|r| r.fuel_gap).collect();
    (
        rows.iter().filter(|r| r.result.success).count() as f64 / n,
        gaps.iter().sum::<f64>() / n,
        percentile(&gaps, 0.5),
        percentile(&rows.iter().map(|r| r.result.position_error).collect::<Vec<_>>(), 0.5),
        percentile(&rows.iter().map(|r| r.result.speed).collect::<Vec<_>>(), 0.5),
    )
}

/// PNG plot of the trajectories (descent: altitude vs horizontal distance to the site, and speed
/// vs time; others: x2 vs x1 and |x| vs time), one line per episode.
pub fn plot(kind: ProblemKind, rows: &[EpisodeReport], out: &Path) -> AnyResult<()> {
    type Map = Box<dyn Fn(f64, &[f64]) -> (f64, f64)>;
    let panels: Vec<(&str, &str, &str, Map)> = if kind == ProblemKind::Descent {
        vec![
            ("Trajectories", "horizontal distance to the site [m]", "altitude [m]", Box::new(|_, x: &[f64]| ((x[0] * x[0] + x[1] * x[1]).sqrt(), x[2]))),
            ("Speed", "time [s]", "speed [m/s]", Box::new(|t, x: &[f64]| (t, (x[3] * x[3] + x[4] * x[4] + x[5] * x[5]).sqrt()))),
        ]
    } else {
        vec![
            ("Phase plane", "x1", "x2", Box::new(|_, x: &[f64]| (x[0], x[1]))),
            ("Distance to the target", "time [s]", "|x|", Box::new(|t, x: &[f64]| (t, (x[0] * x[0] + x[1] * x[1]).sqrt()))),
        ]
    };
    let panels: Vec<Panel> = panels
        .iter()
        .map(|(title, xl, yl, f)| {
            let series = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Series::line(if rows.len() <= 8 { format!("episode {i}") } else { String::new() }, r.trajectory.iter().map(|(t, x)| f(*t, x)).collect())
                })
                .collect();
            Panel::new(*title, *xl, *yl, series)
        })
        .collect();
    trc_control::plot::write_png(out, &panels, (560, 420), 2)?;
    Ok(())
}

/// Flies `episodes` lockstep episodes with the controller `cfg` asks for (of `scenario`, or of
/// `sim.scenario`, or sampled: [`episodes_for`]) and returns their reports and all solve times.
pub fn closed_loop_rows(cfg: &TrcConfig, episodes: usize, progress: bool, scenario: Option<&Scenario>) -> AnyResult<(Vec<EpisodeReport>, Vec<f64>)> {
    let mut cfg = cfg.clone();
    let specs = episodes_for(&mut cfg, episodes, scenario, Some(&crate::launcher::package_root()))?;
    let cfg = &cfg;
    let mut ctl = RecedingHorizon::from_config(cfg, None)?;
    if !ctl.has_policy() {
        return Err(format!("no usable policy: {}", ctl.policy_name()).into());
    }
    let bar = if progress { indicatif::ProgressBar::new(specs.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("closed loop [{bar:40}] {pos}/{len} {msg} (eta {eta})").expect("valid template").progress_chars("=> "),
    );
    let (mut rows, mut all_solve) = (Vec::new(), Vec::new());
    for spec in &specs {
        let r = fly(&mut ctl, &cfg.problem, &cfg.sim, spec)?;
        all_solve.extend(&r.solve_ms);
        rows.push(r);
        let landed = rows.iter().filter(|r| r.result.success).count();
        bar.set_message(format!("{landed}/{} successful", rows.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((rows, all_solve))
}
