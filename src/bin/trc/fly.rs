//! `trc closed-loop`: seeded closed-loop episodes in one process (controller and plant in
//! lockstep, every answer held to its wall-clock deadline), with a per-episode table, a summary,
//! and a trajectory plot; and the table / plot of `trc demo` (episodes flown over DDS).

use trc_control::closed_loop::percentile;
use std::fmt::Write as _;
use std::path::Path;

use trc_control::closed_loop::{episode_specs, fly, ClosedLoopReport, EpisodeSpec};
use trc_control::config::{ProblemKind, TrcConfig};
use trc_control::control::{policy_from_config, InferenceWorker, RecedingHorizon};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;


/// One row of the episode table.
#[derive(Debug, Clone)]
pub struct Row {
    pub index: u64,
    pub success: bool,
    pub touched_down: bool,
    pub position_error: f64,
    pub speed: f64,
    pub fuel_kg: f64,
    pub fuel_opt_kg: f64,
    pub fuel_gap: f64,
    pub solve_p50: f64,
    pub solve_p99: f64,
    pub anytime: u64,
    pub fallback: u64,
    pub failed: u64,
    pub late: u64,
    pub trajectory: Vec<(f64, Vec<f64>)>,
}

/// Markdown table of episodes plus a summary line.
pub fn table(kind: ProblemKind, rows: &[Row]) -> String {
    let mut md = String::new();
    if kind == ProblemKind::Descent {
        md.push_str("| episode | result | touchdown error [m] | speed [m/s] | fuel [kg] | optimum [kg] | fuel gap | solve p50 / p99 [ms] | ANYTIME | FALLBACK | FAILED | late |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            let _ = writeln!(md, "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:+.2}% | {:.2} / {:.2} | {} | {} | {} | {} |", r.index, if r.success { "landed" } else { "missed" }, r.position_error, r.speed, r.fuel_kg, r.fuel_opt_kg, r.fuel_gap * 100.0, r.solve_p50, r.solve_p99, r.anytime, r.fallback, r.failed, r.late);
        }
    } else {
        md.push_str("| episode | result | final error | solve p50 / p99 [ms] | ANYTIME | FALLBACK | FAILED | late |\n|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            let _ = writeln!(md, "| {} | {} | {:.3} | {:.2} / {:.2} | {} | {} | {} | {} |", r.index, if r.success { "success" } else { "fail" }, r.position_error, r.solve_p50, r.solve_p99, r.anytime, r.fallback, r.failed, r.late);
        }
    }
    md
}

/// Summary numbers over episodes: (success rate, mean fuel gap, median fuel gap, median position error, median speed).
pub fn summary(rows: &[Row]) -> (f64, f64, f64, f64, f64) {
    let n = rows.len().max(1) as f64;
    let gaps: Vec<f64> = rows.iter().map(|r| r.fuel_gap).collect();
    (
        rows.iter().filter(|r| r.success).count() as f64 / n,
        gaps.iter().sum::<f64>() / n,
        percentile(&gaps, 0.5),
        percentile(&rows.iter().map(|r| r.position_error).collect::<Vec<_>>(), 0.5),
        percentile(&rows.iter().map(|r| r.speed).collect::<Vec<_>>(), 0.5),
    )
}

/// SVG plot of the trajectories (descent: altitude vs horizontal distance to the site, and
/// altitude vs time; others: x1 vs x2).
pub fn plot(kind: ProblemKind, rows: &[Row], out: &Path) -> AnyResult<()> {
    let (w, h, pad) = (900.0, 420.0, 50.0);
    let mut svg = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n");
    let panels: Vec<(&str, &str, Box<dyn Fn(f64, &[f64]) -> (f64, f64)>)> = if kind == ProblemKind::Descent {
        vec![
            ("horizontal distance to the site [m]", "altitude [m]", Box::new(|_, x: &[f64]| ((x[0] * x[0] + x[1] * x[1]).sqrt(), x[2]))),
            ("time [s]", "speed [m/s]", Box::new(|t, x: &[f64]| (t, (x[3] * x[3] + x[4] * x[4] + x[5] * x[5]).sqrt()))),
        ]
    } else {
        vec![("x1", "x2", Box::new(|_, x: &[f64]| (x[0], x[1]))), ("time [s]", "|x|", Box::new(|t, x: &[f64]| (t, (x[0] * x[0] + x[1] * x[1]).sqrt())))]
    };
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    for (p, (xl, yl, f)) in panels.iter().enumerate() {
        let x_off = p as f64 * w / 2.0;
        let pts: Vec<Vec<(f64, f64)>> = rows.iter().map(|r| r.trajectory.iter().map(|(t, x)| f(*t, x)).collect()).collect();
        let all: Vec<&(f64, f64)> = pts.iter().flatten().collect();
        if all.is_empty() {
            continue;
        }
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (a, b) in &all {
            x0 = x0.min(*a);
            x1 = x1.max(*a);
            y0 = y0.min(*b);
            y1 = y1.max(*b);
        }
        let (x1, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, if y1 > y0 { y1 } else { y0 + 1.0 });
        let (pw, ph) = (w / 2.0 - 2.0 * pad, h - 2.0 * pad);
        let sx = |v: f64| x_off + pad + (v - x0) / (x1 - x0) * pw;
        let sy = |v: f64| h - pad - (v - y0) / (y1 - y0) * ph;
        let _ = writeln!(svg, "<rect x='{}' y='{pad}' width='{pw}' height='{ph}' fill='none' stroke='black'/>", x_off + pad);
        let _ = writeln!(svg, "<text x='{}' y='{}' text-anchor='middle'>{xl}</text>", x_off + pad + pw / 2.0, h - 12.0);
        let _ = writeln!(svg, "<text x='{}' y='{}' text-anchor='middle' transform='rotate(-90 {} {})'>{yl}</text>", x_off + 14.0, pad + ph / 2.0, x_off + 14.0, pad + ph / 2.0);
        for (v, anchor, x, y) in [(x0, "start", sx(x0), h - pad + 14.0), (x1, "end", sx(x1), h - pad + 14.0)] {
            let _ = writeln!(svg, "<text x='{x}' y='{y}' text-anchor='{anchor}'>{v:.1}</text>");
        }
        for (v, y) in [(y0, sy(y0)), (y1, sy(y1) + 10.0)] {
            let _ = writeln!(svg, "<text x='{}' y='{y}' text-anchor='end'>{v:.1}</text>", x_off + pad - 4.0);
        }
        for (i, line) in pts.iter().enumerate() {
            let d: Vec<String> = line.iter().map(|(a, b)| format!("{:.1},{:.1}", sx(*a), sy(*b))).collect();
            let _ = writeln!(svg, "<polyline fill='none' stroke='{}' stroke-width='1.5' points='{}'/>", colors[i % colors.len()], d.join(" "));
        }
    }
    svg.push_str("</svg>\n");
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(out, svg)?;
    log::info!("wrote {}", out.display());
    Ok(())
}

fn row(spec: &EpisodeSpec, r: &ClosedLoopReport) -> Row {
    Row {
        index: spec.index,
        success: r.result.success,
        touched_down: r.result.touched_down,
        position_error: r.result.position_error,
        speed: r.result.speed,
        fuel_kg: r.result.fuel_kg,
        fuel_opt_kg: spec.fuel_opt_kg,
        fuel_gap: r.fuel_gap,
        solve_p50: percentile(&r.solve_ms, 0.5),
        solve_p99: percentile(&r.solve_ms, 0.99),
        anytime: r.counts[1],
        fallback: r.counts[2],
        failed: r.counts[3],
        late: r.late,
        trajectory: r.trajectory.clone(),
    }
}

/// Flies `episodes` lockstep episodes and returns the rows and all solve times.
pub fn closed_loop_rows(cfg: &TrcConfig, episodes: usize, progress: bool) -> AnyResult<(Vec<Row>, Vec<f64>)> {
    let pcfg = cfg.clone();
    let worker = InferenceWorker::spawn(move || policy_from_config(&pcfg, None))?;
    let mut ctl = RecedingHorizon::new(&cfg.problem, cfg.controller.clone(), Ok(worker))?;
    let specs = episode_specs(&cfg.problem, cfg.sim.seed, cfg.sim.first_episode, episodes);
    let bar = if progress { indicatif::ProgressBar::new(specs.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("closed loop [{bar:40}] {pos}/{len} {msg} (eta {eta})").expect("valid template").progress_chars("=> "));
    let (mut rows, mut all_solve) = (Vec::new(), Vec::new());
    for spec in &specs {
        let r = fly(&mut ctl, &cfg.problem, &cfg.sim, spec)?;
        all_solve.extend(&r.solve_ms);
        rows.push(row(spec, &r));
        let landed = rows.iter().filter(|r| r.success).count();
        bar.set_message(format!("{landed}/{} successful", rows.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((rows, all_solve))
}
