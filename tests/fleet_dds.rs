//! Several vehicles, one controller each (issue: GPU-resident TRC, "a multi-vehicle mode ... one
//! process per vehicle sharing a GPU, with its topics documented"): two trc_sim + trc_node pairs
//! on one ROS domain, each pair in its own namespace (`-r __ns:=/vehicle_<i>`, what `trc launch
//! descent namespace:=vehicle_<i>` and `Node(namespace=...)` pass; tests/launch.rs) with its own
//! clock (`-r /clock:=/vehicle_<i>/clock`), must each land their own episode. Were the namespaces
//! not applied, both simulators and both controllers would share `/state`, `/goal` and `/command`
//! and neither episode would land.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(exe: &str, ns: &str, extra: &[String], domain: u32) -> Child {
    let mut args = vec![
        "--ros-args".to_string(),
        "-r".into(),
        format!("__ns:=/{ns}"),
        "-r".into(),
        format!("/clock:=/{ns}/clock"),
        "--params-file".into(),
        format!("{}/config/descent.yaml", env!("CARGO_MANIFEST_DIR")),
    ];
    for e in extra {
        args.push("-p".into());
        args.push(e.clone());
    }
    Command::new(exe)
        .args(&args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"))
}

#[test]
fn two_namespaced_vehicles_land_side_by_side_over_dds() {
    let domain = common::offset_ros_domain(151);
    let dir = std::env::temp_dir().join(format!("trc-fleet-dds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut vehicles = Vec::new();
    for (i, seed) in [(0, 3), (1, 4)] {
        let ns = format!("vehicle_{i}");
        let results = dir.join(format!("{ns}.yaml"));
        let _ = std::fs::remove_file(&results);
        let node =
            start(env!("CARGO_BIN_EXE_trc_node"), &ns, &["use_sim_time:=true".into(), "node.device:=cpu".into(), "controller.deadline_s:=0.2".into()], domain);
        let sim = start(
            env!("CARGO_BIN_EXE_trc_sim"),
            &ns,
            &[
                "use_sim_time:=true".into(),
                "sim.time_scale:=2.0".into(),
                "sim.episodes:=1".into(),
                format!("sim.seed:={seed}"),
                format!("sim.results_file:={}", results.display()),
            ],
            domain,
        );
        vehicles.push((ns, results, node, sim));
    }
    let t = Instant::now();
    let mut done: Vec<bool> = vec![false; vehicles.len()];
    while done.iter().any(|d| !d) && t.elapsed() < Duration::from_secs(240) {
        for (k, v) in vehicles.iter_mut().enumerate() {
            done[k] = done[k] || v.3.try_wait().unwrap().is_some();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut seen = Vec::new();
    for (ns, results, node, sim) in vehicles {
        let sim_log = common::stop(sim, Duration::from_secs(5));
        let node_log = common::stop(node, Duration::from_secs(5));
        seen.push((ns, std::fs::read_to_string(&results).unwrap_or_default(), sim_log, node_log));
    }
    for (k, (ns, yaml, sim_log, node_log)) in seen.iter().enumerate() {
        let tail = |s: &str| s.chars().rev().take(2500).collect::<Vec<_>>().into_iter().rev().collect::<String>();
        assert!(done[k], "{ns}: its episode did not finish within 240 s:\n{}\n{}", tail(sim_log), tail(node_log));
        assert!(yaml.contains("success: true"), "{ns}: did not land:\n{yaml}\n{}\n{}", tail(sim_log), tail(node_log));
    }
}
