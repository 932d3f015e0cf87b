//! trc_node as a managed node (issue: robot and simulator integration, "Lifecycle ... tested from
//! rclpy (including: no command while inactive; a failed configure on a bad model reports the
//! reason)"): with `node.autostart: false` an rclpy client drives it with the standard
//! lifecycle_msgs services (unconfigured -> inactive -> active -> inactive -> unconfigured ->
//! finalized) while feeding it descent states, and counts what it publishes in each state.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn python() -> String {
    std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into())
}

/// Runs the client in `mode` against a managed trc_node with `extra` parameters; returns the
/// client's JSON, the node's exit status (if it exited) and its log.
fn drive(mode: &str, extra: &[&str], domain: u32) -> (serde_json::Value, Option<std::process::ExitStatus>, String) {
    let params: Vec<&str> = ["node.autostart:=false", "node.device:=cpu", "controller.deadline_s:=0.5"].iter().chain(extra).copied().collect();
    let node = common::spawn_node(env!("CARGO_BIN_EXE_trc_node"), "descent", &params, domain);
    let mut client = Command::new(python())
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ros/rclpy_lifecycle.py"), mode])
        .env("ROS_DOMAIN_ID", domain.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rclpy client (is trc-env.sh sourced?)");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(180) {
            let _ = client.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    client.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    client.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    // a finalized node exits by itself
    let mut node = node;
    let t = Instant::now();
    let mut exited = None;
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(s)) = node.try_wait() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = common::stop(node, Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "rclpy client failed ({status:?}): {err}\n{out}\nnode:\n{log}");
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}\n{err}"));
    (v, exited, log)
}

#[test]
fn a_managed_node_answers_only_while_active() {
    let domain = common::isolate_ros_domain();
    let (v, exited, log) = drive("full", &[], domain);
    let steps = v["steps"].as_array().unwrap();
    let step = |i: usize| steps[i].as_array().unwrap().clone();
    // [name, (ok,) state, commands, sequences]
    assert_eq!(step(0)[1], "unconfigured", "{v}");
    assert_eq!((step(0)[2].as_u64(), step(0)[3].as_u64()), (Some(0), Some(0)), "nothing published while unconfigured: {v}");
    assert_eq!(v["activate_unconfigured"], false, "activate is not a transition of unconfigured");
    assert_eq!((step(1)[1].as_bool(), step(1)[2].as_str()), (Some(true), Some("inactive")), "{v}\n{log}");
    assert_eq!((step(1)[3].as_u64(), step(1)[4].as_u64()), (Some(0), Some(0)), "no command while inactive: {v}");
    assert_eq!(v["available_inactive"], serde_json::json!(["activate", "cleanup", "shutdown"]));
    assert_eq!((step(2)[1].as_bool(), step(2)[2].as_str()), (Some(true), Some("active")), "{v}");
    assert!(step(2)[3].as_u64().unwrap() >= 10, "commands while active (3 s at 10 Hz): {v}\n{log}");
    assert_eq!((step(3)[1].as_bool(), step(3)[2].as_str()), (Some(true), Some("inactive")), "{v}");
    assert_eq!((step(3)[3].as_u64(), step(3)[4].as_u64()), (Some(0), Some(0)), "no command once deactivated: {v}");
    assert_eq!((step(4)[1].as_bool(), step(4)[2].as_str()), (Some(true), Some("unconfigured")), "{v}");
    assert_eq!(v["shutdown"], true);
    let events: Vec<(String, String, String)> = serde_json::from_value(v["events"].clone()).unwrap();
    let goals: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(goals, ["inactive", "active", "inactive", "unconfigured", "finalized"], "transition_event goal states: {events:?}");
    assert!(exited.is_some(), "a finalized node exits:\n{log}");
    assert!(log.contains("warm-up passes"), "activate warms the model up:\n{log}");
}

#[test]
fn a_failed_configure_says_why_and_stays_unconfigured() {
    let domain = common::offset_ros_domain(37);
    let (v, _, log) = drive("bad_model", &["node.model:=/nonexistent/trc_model"], domain);
    let steps = v["steps"].as_array().unwrap();
    let configure = steps[1].as_array().unwrap();
    assert_eq!((configure[1].as_bool(), configure[2].as_str()), (Some(false), Some("unconfigured")), "{v}\n{log}");
    assert_eq!((configure[3].as_u64(), configure[4].as_u64()), (Some(0), Some(0)), "nothing published: {v}");
    let logs: Vec<String> = serde_json::from_value(v["logs"].clone()).unwrap();
    assert!(logs.iter().any(|m| m.contains("configure failed") && m.contains("/nonexistent/trc_model")), "the reason reaches /rosout: {logs:?}\nnode:\n{log}");
}
