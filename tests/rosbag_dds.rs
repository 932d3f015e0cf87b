//! Rosbags over DDS (separate processes on loopback, each test on its own ROS_DOMAIN_ID):
//! `trc record` records a closed loop of trc_sim + trc_node and `trc replay` reproduces every
//! recorded plan; an independent reader (Foxglove's Python `mcap` + `mcap-ros2-support`) reads
//! that bag with the same counts, types and ControlSequence; `trc play` of the shipped bag
//! drives trc_node to the bag's plans.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trc_control::bag::msgs::{from_cdr, types, ControlSequenceMsg};
use trc_control::bag::replay::{replay, DeadlineMode, ReplayOptions, Verdict};
use trc_control::bag::Bag;
use trc_control::config::TrcConfig;
use trc_control::control::RecedingHorizon;

/// Largest |u - u_rec| [N] between plans of the same states (thrust ~1e4 N): see tests/rosbag.rs.
const TOL_U_N: f64 = 1e-3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into())
}

fn spawn(exe: &str, args: &[String], domain: u32) -> Child {
    Command::new(exe)
        .args(args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"))
}

fn ros_args(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--ros-args".to_string(), "--params-file".into(), root().join("config/descent.yaml").display().to_string()];
    for e in extra {
        a.push("-p".into());
        a.push(e.to_string());
    }
    a
}

/// SIGINT, wait up to 10 s, then the output.
fn stop(c: Child) -> String {
    common::stop(c, Duration::from_secs(10))
}

fn wait_exit(c: &mut Child, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = c.try_wait() {
            return s.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trc-rosbag-dds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn controller() -> RecedingHorizon {
    let mut cfg = TrcConfig::from_file(root().join("config/descent.yaml")).unwrap();
    cfg.controller.deadline_s = 10.0;
    RecedingHorizon::from_config(&cfg, Some(&root())).unwrap()
}

/// Gives trc_node 3 s to load and warm up its model (well under 1 s here), so the recorder
/// and the player do not race its start-up; fails if it exited.
fn let_start(node: &mut Child) {
    std::thread::sleep(Duration::from_secs(3));
    if let Ok(Some(s)) = node.try_wait() {
        let mut err = String::new();
        if let Some(mut e) = node.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("trc_node exited early: {s}\n{err}");
    }
}

#[test]
fn a_closed_loop_recorded_over_dds_replays_plan_for_plan_and_reads_independently() {
    let domain = common::offset_ros_domain(101);
    let bag_dir = tmp("flight");
    let own_dir = tmp("node-own");
    let record_to = format!("node.record_to:={}", own_dir.display());
    // a node deadline no CI machine misses: every recorded answer is then a full refinement
    let mut node =
        spawn(env!("CARGO_BIN_EXE_trc_node"), &ros_args(&["use_sim_time:=true", "node.device:=cpu", "controller.deadline_s:=0.5", &record_to]), domain);
    let_start(&mut node);
    let rec = spawn(env!("CARGO_BIN_EXE_trc"), &["record".into(), "-o".into(), bag_dir.display().to_string(), "--use-sim-time".into()], domain);
    let mut sim = spawn(
        env!("CARGO_BIN_EXE_trc_sim"),
        &ros_args(&[
            "use_sim_time:=true",
            "sim.time_scale:=2.0",
            "sim.episodes:=1",
            "sim.wait_for_subscribers:=2",
            "sim.scenario:=scenarios/short_landing.yaml",
        ]),
        domain,
    );
    let landed = wait_exit(&mut sim, Duration::from_secs(240));
    let sim_log = stop(sim);
    std::thread::sleep(Duration::from_millis(500));
    let rec_log = stop(rec);
    let node_log = stop(node);
    assert!(landed, "trc_sim did not finish its episode:\n{sim_log}\n{node_log}");
    assert!(rec_log.contains("bag closed"), "trc record did not close the bag cleanly on SIGINT:\n{rec_log}");

    // the controller core answers the recorded states exactly as the node did
    let bag = Bag::open(&bag_dir).unwrap_or_else(|e| panic!("{e}\n{rec_log}"));
    let mut c = controller();
    let r = replay(&bag, &mut c, &ReplayOptions { deadline: DeadlineMode::Recorded, tol_u: TOL_U_N, ..Default::default() }).unwrap();
    assert!(r.count(Verdict::Match) >= 100, "{}\n{rec_log}", r.summary());
    assert!(r.passed(), "{}\n{}", r.summary(), r.table(10));
    // not compared: at most the handshake's first state (under use_sim_time the node can get it
    // before its first /clock and refuse it as stale, which the bag cannot show), and the states
    // before the recorder received the node's first answer; every later answer matches
    let first_compared = r.cycles.iter().position(|c| c.verdict != Verdict::Unrecorded).unwrap();
    assert!(r.cycles[first_compared..].iter().all(|c| c.verdict != Verdict::Unrecorded));
    assert!(r.count(Verdict::Timing) <= 1, "{}\n{}", r.summary(), r.table(5));
    assert_eq!(r.skipped_states, 0, "{}", r.summary());

    // an independent reader: counts, types and a decoded ControlSequence
    let out = Command::new(python()).arg(root().join("scripts/bag_check.py")).arg(&bag_dir).output().expect("python");
    assert!(out.status.success(), "bag_check.py: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (topic, info) in &bag.topics {
        if info.count == 0 {
            continue;
        }
        assert_eq!(v["topics"][topic]["count"].as_u64(), Some(info.count), "{topic}");
        assert_eq!(v["topics"][topic]["type"].as_str(), Some(info.type_name.as_str()), "{topic}");
        assert_eq!(v["topics"][topic]["encoding"].as_str(), Some("cdr"));
    }
    let first = bag.on("control_sequence").next().unwrap();
    let ours: ControlSequenceMsg = from_cdr(types::CONTROL_SEQUENCE, &first.data).unwrap();
    let theirs = &v["first_control_sequence"];
    assert_eq!(theirs["log_time_ns"].as_u64(), Some(first.log_time_ns));
    assert_eq!(theirs["stamp"][0].as_i64(), Some(ours.header.stamp.sec as i64));
    assert_eq!(theirs["stamp"][1].as_u64(), Some(ours.header.stamp.nanosec as u64));
    assert_eq!(theirs["frame_id"].as_str(), Some(ours.header.frame_id.as_str()));
    assert_eq!(theirs["status"].as_u64(), Some(ours.status as u64));
    assert_eq!(theirs["iterations"].as_u64(), Some(ours.iterations as u64));
    let u: Vec<f64> = theirs["u"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let x: Vec<f64> = theirs["x"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!((u, x), (ours.u.clone(), ours.x.clone()), "the decoded arrays differ");
    assert_eq!(theirs["cost"].as_f64(), Some(ours.cost));

    // node.record_to: the node's own bag of the same flight (its own clock as log time) replays too
    assert!(node_log.contains("recording closed"), "node.record_to did not close its bag:\n{node_log}");
    let own = Bag::open(&own_dir).unwrap();
    let mut c = controller();
    let r2 = replay(&own, &mut c, &ReplayOptions { deadline: DeadlineMode::Recorded, tol_u: TOL_U_N, ..Default::default() }).unwrap();
    assert!(r2.passed() && r2.cycles.len() >= r.cycles.len(), "node.record_to: {}", r2.summary());
    let _ = std::fs::remove_dir_all(&bag_dir);
    let _ = std::fs::remove_dir_all(&own_dir);
}

fn answers_by_stamp(bag: &Path) -> HashMap<i64, ControlSequenceMsg> {
    let bag = Bag::open(bag).unwrap();
    bag.on("control_sequence")
        .map(|m| from_cdr::<ControlSequenceMsg>(types::CONTROL_SEQUENCE, &m.data).unwrap())
        .map(|c| ((c.header.stamp.secs() * 1e6).round() as i64, c))
        .collect()
}

#[test]
fn playing_the_shipped_bag_drives_trc_node_to_the_bag_plans() {
    let domain = common::offset_ros_domain(131);
    let out = tmp("answers");
    let mut node = spawn(env!("CARGO_BIN_EXE_trc_node"), &ros_args(&["use_sim_time:=true", "node.device:=cpu", "controller.deadline_s:=0.5"]), domain);
    let_start(&mut node);
    let rec =
        spawn(env!("CARGO_BIN_EXE_trc"), &["record".into(), "-o".into(), out.display().to_string(), "--topics".into(), "control_sequence".into()], domain);
    let shipped = root().join("tests/data/landing");
    // inputs only (the bag's own answers would collide with the node's), /clock from the bag
    let mut play = spawn(
        env!("CARGO_BIN_EXE_trc"),
        &[
            "play".into(),
            shipped.display().to_string(),
            "--topics".into(),
            "state,goal".into(),
            "--clock".into(),
            "--rate".into(),
            "2".into(),
            "--delay".into(),
            "3".into(),
            "--latched-first".into(),
        ],
        domain,
    );
    let played = wait_exit(&mut play, Duration::from_secs(120));
    let play_log = stop(play);
    std::thread::sleep(Duration::from_millis(500));
    let rec_log = stop(rec);
    let node_log = stop(node);
    assert!(played, "trc play failed:\n{play_log}");
    let recorded = answers_by_stamp(&shipped);
    let answered = answers_by_stamp(&out);
    // every state the node answered is answered as in the bag (the node may skip a state that a
    // newer one overtook in its queue; then the plans after it may differ: counted, not hidden)
    let mut same = 0;
    let mut worst: f64 = 0.0;
    let mut first_bad: Vec<String> = Vec::new();
    let mut stamps: Vec<&i64> = answered.keys().collect();
    stamps.sort();
    for stamp in stamps {
        let a = &answered[stamp];
        let r = recorded.get(stamp).unwrap_or_else(|| panic!("the node answered a state at {stamp} us the bag does not have"));
        let du = a.u.iter().zip(&r.u).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        worst = worst.max(du);
        let ok = du <= TOL_U_N && a.status == r.status && a.iterations == r.iterations;
        same += usize::from(ok);
        if !ok && first_bad.len() < 3 {
            first_bad.push(format!(
                "stamp {stamp} us: status {}/{} iterations {}/{} |du| {du:.3e} N (played/recorded)",
                a.status, r.status, a.iterations, r.iterations
            ));
        }
    }
    assert!(
        answered.len() * 10 >= recorded.len() * 9,
        "the node answered {} of the bag's {} states:\n{play_log}\n{rec_log}\n{node_log}",
        answered.len(),
        recorded.len()
    );
    assert_eq!(
        same,
        answered.len(),
        "{same} of {} answers match the bag's plans (worst |du| {worst:.3e} N); first: {first_bad:#?}\n{node_log}",
        answered.len()
    );
    let _ = std::fs::remove_dir_all(&out);
}
