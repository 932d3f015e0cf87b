//! `trc bench reliability`: trc_node as a separate process over loopback DDS, (1) a soak: trc_sim
//! flying descent episodes back to back at `rate` Hz in real time for `soak_s` seconds, with a
//! competing busy process pinned to one core (`taskset -c 1 yes`), the node's resident memory
//! sampled every 5 s; (2) a burst: states at about 1 kHz for `burst_s` seconds from an r2r probe.
//! Writes the answers, late answers, FAILED and fallback counts, landings and the RSS at the start
//! and end of each part (issue 12: "0 late answers, 0 FAILED cycles after the first plan, every
//! episode landed" under load; issue 14: memory flat over the soak and the burst).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::std_msgs::msg::Header;
use r2r::trc_control::msg::{ControlSequence, Goal, State};
use r2r::QosProfile;
use trc_control::ros::wall_time_now as now;

use crate::launcher::interrupt;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Resident memory of process `pid` [MiB] (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs both parts and writes the markdown fragment to `out`.
///
/// # Errors
/// A node or simulator that cannot be started, or a results file that cannot be read.
pub fn reliability(out: &Path, soak_s: f64, rate_hz: f64, busy: bool, burst_s: f64) -> AnyResult<()> {
    let root = crate::launcher::package_root();
    let bin = std::env::current_exe()?.parent().map(Path::to_path_buf).ok_or("no binary directory")?;
    let cfg = root.join("config/descent.yaml").display().to_string();
    // this run's own domain (the process and its children), discovery on this machine only
    let domain = 150 + std::process::id() % 80;
    std::env::set_var("ROS_DOMAIN_ID", domain.to_string());
    std::env::set_var("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST");
    let mut busy_proc = if busy { Some(Command::new("taskset").args(["-c", "1", "yes"]).stdout(Stdio::null()).spawn()?) } else { None };
    let mut node = Command::new(bin.join("trc_node")).args(["--ros-args", "--params-file", &cfg, "-p", "node.device:=cpu"]).stdout(Stdio::null()).spawn()?;
    let results = std::env::temp_dir().join(format!("trc-soak-{}.yaml", std::process::id()));
    let _ = std::fs::remove_file(&results);
    let mut sim = Command::new(bin.join("trc_sim"))
        .args([
            "--ros-args",
            "--params-file",
            &cfg,
            "-p",
            &format!("sim.rate_hz:={rate_hz}"),
            "-p",
            // enough for the soak (an episode lasts 25-60 s); trc_sim solves each one's LCvx
            // reference before the first flies
            &format!("sim.episodes:={}", (soak_s / 20.0).ceil() as u64 + 2),
            "-p",
            &format!("sim.results_file:={}", results.display()),
        ])
        .stdout(Stdio::null())
        .spawn()?;
    // the soak
    let started = Instant::now();
    let mut rss: Vec<(f64, f64)> = Vec::new();
    let bar = indicatif::ProgressBar::new(soak_s as u64).with_message("soak");
    while started.elapsed().as_secs_f64() < soak_s {
        // from 10 s on: the node has loaded its model and warmed up
        if let Some(m) = rss_mib(node.id()).filter(|_| started.elapsed().as_secs_f64() >= 10.0) {
            rss.push((started.elapsed().as_secs_f64(), m));
        }
        if let Ok(Some(st)) = node.try_wait() {
            return Err(format!("trc_node exited during the soak: {st}").into());
        }
        std::thread::sleep(Duration::from_secs(5));
        bar.set_position(started.elapsed().as_secs());
    }
    bar.finish_and_clear();
    interrupt(&mut sim);
    if let Some(b) = busy_proc.as_mut() {
        let _ = b.kill();
        let _ = b.wait();
    }
    let text = std::fs::read_to_string(&results).unwrap_or_default();
    let (mut episodes, mut landed, mut cycles, mut late, mut failed, mut fallback, mut e2e_p99) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0.0f64);
    let mut cut = 0u64;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)?;
        // the episode the end of the soak interrupted: not flown to its end
        if !v["result"]["touched_down"].as_bool().unwrap_or(false)
            && !v["result"]["success"].as_bool().unwrap_or(false)
            && v["cycles"].as_u64().unwrap_or(0) == 0
        {
            cut += 1;
            continue;
        }
        episodes += 1;
        landed += u64::from(v["result"]["success"].as_bool().unwrap_or(false));
        cycles += v["cycles"].as_u64().unwrap_or(0);
        late += v["late"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        fallback += v["fallback_shifted"].as_u64().unwrap_or(0);
        e2e_p99 = e2e_p99.max(v["e2e_ms_p99"].as_f64().unwrap_or(0.0));
    }
    let _ = std::fs::remove_file(&results);
    // the burst: a probe publishes states at about 1 kHz to the same node
    let rss_before_burst = rss_mib(node.id());
    let ctx = r2r::Context::create()?;
    let mut probe = r2r::Node::create(ctx, "trc_burst_probe", "")?;
    let goal_pub = probe.create_publisher::<Goal>("/goal", QosProfile::default().keep_last(1).transient_local())?;
    let state_pub = probe.create_publisher::<State>("/state", QosProfile::default())?;
    let mut answers = probe.subscribe::<ControlSequence>("/control_sequence", QosProfile::default().keep_last(1000))?;
    goal_pub.publish(&Goal { header: Header { stamp: now(), frame_id: "landing_site".into() }, x_target: vec![0.0; 7], t_go: 60.0 })?;
    // discovery, and the node's first plan for the goal
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        probe.spin_once(Duration::from_millis(10));
    }
    let deadline_ms = 50.0;
    let (mut sent, mut got, mut got_late, mut got_failed) = (0u64, 0u64, 0u64, 0u64);
    let t = Instant::now();
    let x = vec![300.0, -200.0, 1500.0, 10.0, 5.0, -60.0, 1850.0];
    while t.elapsed().as_secs_f64() < burst_s {
        state_pub.publish(&State { header: Header { stamp: now(), frame_id: "landing_site".into() }, x: x.clone() })?;
        sent += 1;
        probe.spin_once(Duration::from_micros(500));
        while let Some(Some(m)) = answers.next().now_or_never() {
            got += 1;
            got_late += u64::from(m.solve_time_ms > deadline_ms + 1.0);
            got_failed += u64::from(m.status == 3);
        }
    }
    let t_end = Instant::now();
    while t_end.elapsed() < Duration::from_secs(1) {
        probe.spin_once(Duration::from_millis(10));
        while let Some(Some(m)) = answers.next().now_or_never() {
            got += 1;
            got_late += u64::from(m.solve_time_ms > deadline_ms + 1.0);
            got_failed += u64::from(m.status == 3);
        }
    }
    let rss_after_burst = rss_mib(node.id());
    interrupt(&mut node);

    let mut md = String::from("## Soak and burst over DDS\n\n");
    let _ = writeln!(
        md,
        "Command: `trc bench reliability --soak-s {soak_s} --rate-hz {rate_hz}{} --burst-s {burst_s}` ({} build, {} cores): trc_node (shipped descent model, CPU, `config/descent.yaml`) and trc_sim as separate processes over loopback Fast DDS in real time{}; then an r2r probe publishing states to the same node as fast as it can for {burst_s} s. Memory: trc_node's resident set (VmRSS) sampled every 5 s.\n",
        if busy { " --busy" } else { "" },
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if busy { ", with a busy process (`yes`) pinned to core 1" } else { "" }
    );
    md.push_str("| part | duration [s] | answers | late (> deadline) | FAILED | FALLBACK_SHIFTED | episodes landed | e2e p99 worst [ms] | RSS start / max / end [MiB] |\n|---|---|---|---|---|---|---|---|---|\n");
    let (r0, rmax, r1) =
        (rss.first().map(|r| r.1).unwrap_or(f64::NAN), rss.iter().map(|r| r.1).fold(f64::NAN, f64::max), rss.last().map(|r| r.1).unwrap_or(f64::NAN));
    let _ = writeln!(
        md,
        "| soak at {rate_hz} Hz | {soak_s:.0} | {cycles} | {late} | {failed} | {fallback} | {landed} of {episodes} flown to the end{} | {e2e_p99:.2} | {r0:.1} / {rmax:.1} / {r1:.1} |",
        if cut > 0 { format!(" ({cut} cut off by the end of the soak)") } else { String::new() }
    );
    let _ = writeln!(
        md,
        "| burst at {:.0} Hz sent | {burst_s:.0} | {got} ({sent} states sent; the node answers the newest state it has) | {got_late} | {got_failed} | - | - | - | {:.1} / - / {:.1} |",
        sent as f64 / burst_s,
        rss_before_burst.unwrap_or(f64::NAN),
        rss_after_burst.unwrap_or(f64::NAN)
    );
    print!("{md}");
    crate::bench::write_out(out, &md)
}
