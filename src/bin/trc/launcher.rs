//! `trc launch` (the equivalent of `ros2 launch trc_control <problem>.launch.py`) and `trc demo`
//! (closed-loop episodes over DDS: trc_sim + trc_node as separate processes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize as _;
use trc_control::closed_loop::EpisodeReport;
use trc_control::config::ProblemKind;
use trc_control::launch::{resolve, spec};

use crate::fly;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The package root (where config/, models/ and launch/ are): the source tree this binary was
/// built from.
pub fn package_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SIGINT to `child`, up to 5 s for it to exit, then SIGKILL.
pub(crate) fn interrupt(child: &mut Child) {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops every child (SIGINT, then SIGKILL after 5 s) and waits for it.
fn stop_all(children: Vec<(String, Child)>) {
    for (_, mut ch) in children {
        interrupt(&mut ch);
    }
}

/// Starts the launch file's processes; with `sim:=true` waits for trc_sim to finish its
/// episodes, then stops trc_node; otherwise waits for trc_node. Returns trc_sim's (or
/// trc_node's) exit status.
///
/// SIGINT or SIGTERM sent to this process (Ctrl-C, `kill`, a supervisor stopping it) is
/// forwarded: every child gets SIGINT (SIGKILL 5 s later if it is still running) and is waited
/// for, so no node outlives the launch; the result is then an error naming the signal.
///
/// # Errors
/// A child that cannot be started, a node other than the main one that exits early, or a signal.
pub fn launch(problem: ProblemKind, args: &[String]) -> AnyResult<ExitStatus> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let s = spec(problem);
    let cmds = resolve(&s, args, &package_root())?;
    let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).ok_or("cannot locate the trc binary's directory")?;
    for c in &cmds {
        let exe = bin_dir.join(&c.executable);
        if !exe.exists() {
            return Err(format!("{} not found: build it first (cargo build --bins)", exe.display()).into());
        }
    }
    let mut children: Vec<(String, Child)> = Vec::new();
    for c in &cmds {
        let exe = bin_dir.join(&c.executable);
        log::info!("launch: {} {}", exe.display(), c.args.join(" "));
        match Command::new(&exe).args(&c.args).spawn() {
            Ok(ch) => children.push((c.executable.clone(), ch)),
            Err(e) => {
                stop_all(children);
                return Err(format!("cannot start {}: {e}", exe.display()).into());
            }
        }
    }
    let main = if children.iter().any(|(n, _)| n == "trc_sim") { "trc_sim" } else { "trc_node" };
    let idx = children.iter().position(|(n, _)| n == main).expect("started above");
    let status = loop {
        // first: a Ctrl-C reaches the children too (one process group), and one that exits on it
        // must not read as the launch's own end
        if stop.load(Ordering::Relaxed) {
            log::info!("launch: signal received; stopping {} and waiting for them", children.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "));
            stop_all(children);
            return Err("launch stopped by a signal (SIGINT/SIGTERM); every node it started was stopped".into());
        }
        if let Some(st) = children[idx].1.try_wait()? {
            break st;
        }
        // a node that dies early is an error worth stopping for
        let mut early = None;
        for (name, ch) in children.iter_mut() {
            if name != main {
                if let Some(st) = ch.try_wait()? {
                    early = Some(format!("{name} exited early with {st}; see its log above"));
                }
            }
        }
        if let Some(e) = early {
            stop_all(children);
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (name, mut ch) in children {
        if name != main {
            interrupt(&mut ch);
        }
    }
    Ok(status)
}

/// `trc demo`: `episodes` closed-loop episodes over DDS (trc_sim + trc_node, use_sim_time at
/// `time_scale`), then the episode table, a summary and the trajectory plot.
pub fn demo(problem: ProblemKind, episodes: u32, seed: u64, time_scale: f64, model: Option<String>, plot: &Path) -> AnyResult<()> {
    let dir = package_root().join("target").join("demo");
    std::fs::create_dir_all(&dir)?;
    let results = dir.join(format!("{problem}-results-{}.yaml", std::process::id()));
    let _ = std::fs::remove_file(&results);
    let mut args = vec![
        "sim:=true".to_string(),
        "use_sim_time:=true".into(),
        format!("time_scale:={time_scale}"),
        format!("episodes:={episodes}"),
        format!("seed:={seed}"),
        format!("results_file:={}", results.display()),
    ];
    if let Some(m) = model {
        args.push(format!("model:={m}"));
    }
    println!("trc demo: {episodes} {problem} episodes over DDS (trc_sim + trc_node), sim time x{time_scale}; logs follow.\n");
    let status = launch(problem, &args)?;
    let text = std::fs::read_to_string(&results).map_err(|e| format!("no results from trc_sim ({}): {e}", results.display()))?;
    let rows = serde_yaml::Deserializer::from_str(&text)
        .map(EpisodeReport::deserialize)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad results file {}: {e}", results.display()))?;
    let e2e = (rows.iter().map(|r| r.e2e_ms_p50).collect::<Vec<_>>(), rows.iter().map(|r| r.e2e_ms_p99).collect::<Vec<_>>());
    let (succ, gap_mean, gap_med, pos_med, speed_med) = fly::summary(&rows);
    println!("\n{}", fly::table(problem, &rows));
    let landed = rows.iter().filter(|r| r.result.success).count();
    let (e2e_p50, e2e_p99) = (trc_control::closed_loop::percentile(&e2e.0, 0.5), e2e.1.iter().copied().fold(f64::NAN, f64::max));
    if problem == ProblemKind::Descent {
        println!(
            "{landed} of {} episodes successful ({:.0}%) | fuel gap mean {:+.2}%, median {:+.2}% | median touchdown error {pos_med:.2} m, speed {speed_med:.2} m/s | end-to-end state -> sequence p50 {e2e_p50:.2} ms, worst p99 {e2e_p99:.2} ms",
            rows.len(),
            succ * 100.0,
            gap_mean * 100.0,
            gap_med * 100.0,
        );
    } else {
        println!(
            "{landed} of {} episodes successful ({:.0}%) | median final error |x_N - x_target| {pos_med:.3} | end-to-end state -> sequence p50 {e2e_p50:.2} ms, worst p99 {e2e_p99:.2} ms",
            rows.len(),
            succ * 100.0,
        );
    }
    fly::plot(problem, &rows, plot)?;
    println!("trajectory plot: {}  (episode results: {})", plot.display(), results.display());
    if !status.success() && rows.len() < episodes as usize {
        return Err(format!("trc_sim exited with {status}").into());
    }
    Ok(())
}
