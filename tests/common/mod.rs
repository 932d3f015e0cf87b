//! Shared helpers for the ROS integration tests.
#![allow(dead_code)]

use nalgebra::DMatrix;
use trc_control::plan::{Plan, PlanStatus};

/// Largest ROS domain id Fast DDS accepts with the default port base (its port formula
/// overflows above 232: "Calculated port number is too high").
pub const MAX_DOMAIN_ID: u32 = 232;

/// A domain for the processes a test starts, `offset` away from this process's own
/// ([`isolate_ros_domain`]), wrapped into 1..=[`MAX_DOMAIN_ID`].
pub fn offset_ros_domain(offset: u32) -> u32 {
    (isolate_ros_domain() - 1 + offset) % MAX_DOMAIN_ID + 1
}

/// Puts this test process on its own ROS domain (from TRC_TEST_DOMAIN_ID, else derived from the
/// pid) and keeps discovery on localhost, before any rcl context exists. Returns the domain id.
pub fn isolate_ros_domain() -> u32 {
    let id = std::env::var("TRC_TEST_DOMAIN_ID").ok().and_then(|s| s.parse().ok()).unwrap_or(1 + std::process::id() % 100);
    std::env::set_var("ROS_DOMAIN_ID", id.to_string());
    std::env::set_var("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST");
    id
}

/// A descent-sized plan (N = 50, m = 3, n = 7) with distinct, non-round values everywhere.
pub fn sample_plan() -> Plan {
    Plan {
        stamp: 1_700_000_123.456_789,
        frame_id: "landing_site".into(),
        dt: 0.912_345_678_9,
        u: DMatrix::from_fn(50, 3, |k, j| 5000.0 + 97.3 * k as f64 - 1234.567 * j as f64 + 0.1),
        x: DMatrix::from_fn(51, 7, |k, j| (k as f64 * 0.37 - 3.0) * (j as f64 + 1.1) / 3.0),
        cost: 654_321.987_654,
        status: PlanStatus::FallbackShifted,
        iterations: 3,
        solve_time_ms: 1.234_567,
    }
}

/// Stops a child process: SIGINT if it still runs, up to `grace` for it to exit, then SIGKILL;
/// returns its stdout and stderr.
pub fn stop(mut c: std::process::Child, grace: std::time::Duration) -> String {
    use std::io::Read;
    if let Ok(None) = c.try_wait() {
        let _ = std::process::Command::new("kill").args(["-INT", &c.id().to_string()]).status();
    }
    let t = std::time::Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(_)) = c.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = c.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = c.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    out + &err
}

/// Starts the node binary `exe` with `config/<config>.yaml` and the `-p` overrides `params` on
/// ROS domain `domain`, stdout and stderr piped (read them with [`stop`]).
pub fn spawn_node(exe: &str, config: &str, params: &[&str], domain: u32) -> std::process::Child {
    let mut args = vec!["--ros-args".to_string(), "--params-file".into(), format!("{}/config/{config}.yaml", env!("CARGO_MANIFEST_DIR"))];
    for p in params {
        args.push("-p".into());
        args.push(p.to_string());
    }
    std::process::Command::new(exe)
        .args(&args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"))
}
