//! Process hygiene (issue: reliability and security): `trc launch` stops the nodes it started when
//! it is itself stopped (no orphans), and trc_node stamps each answer with its state's own
//! `builtin_interfaces/Time`, exactly (a float of seconds since the epoch resolves only 240 ns).
//! Both over loopback DDS, each on its own ROS_DOMAIN_ID.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::builtin_interfaces::msg::Time;
use r2r::std_msgs::msg::Header;
use r2r::trc_control::msg::{ControlSequence, Goal, State};
use r2r::QosProfile;

/// `(pid, comm, state)` of every process whose parent is `ppid` (from /proc/*/stat).
fn children_of(ppid: u32) -> Vec<(u32, String, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if rest.len() > 1 && rest[1].parse::<u32>().ok() == Some(ppid) {
            out.push((pid, stat[open + 1..close].to_string(), rest[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z")))
        .unwrap_or(false)
}

#[test]
fn trc_launch_stops_its_nodes_when_it_is_stopped() {
    // this test's children on a domain of their own (the process-wide one is the stamp test's)
    let domain = common::offset_ros_domain(101);
    let mut launch = Command::new(env!("CARGO_BIN_EXE_trc"))
        .args(["launch", "descent", "device:=cpu"])
        .env("ROS_DOMAIN_ID", domain.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trc launch");
    let t = Instant::now();
    let node = loop {
        if let Some((pid, _, _)) = children_of(launch.id()).into_iter().find(|(_, comm, _)| comm == "trc_node") {
            break pid;
        }
        if t.elapsed() > Duration::from_secs(30) || matches!(launch.try_wait(), Ok(Some(_))) {
            panic!("trc launch started no trc_node:\n{}", common::stop(launch, Duration::from_secs(5)));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // let the node get past its start-up (model loaded, DDS up)
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(node), "trc_node {node} exited on its own");
    let _ = Command::new("kill").args(["-TERM", &launch.id().to_string()]).status();
    let t = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = launch.try_wait() {
            break Some(st);
        }
        if t.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let node_left = alive(node);
    if node_left {
        let _ = Command::new("kill").args(["-KILL", &node.to_string()]).status();
    }
    let log = common::stop(launch, Duration::from_secs(1));
    let status = status.unwrap_or_else(|| panic!("trc launch still running 20 s after SIGTERM:\n{log}"));
    assert!(!node_left, "trc_node {node} outlived trc launch (an orphan):\n{log}");
    assert!(!status.success(), "a launch stopped by a signal exits non-zero, got {status}:\n{log}");
    assert!(log.contains("stopped by a signal"), "the launch says why it stopped:\n{log}");
}

use trc_control::ros::wall_time_now as now;

#[test]
fn answers_carry_their_states_stamp_exactly() {
    let domain = common::isolate_ros_domain();
    let node = common::spawn_node(env!("CARGO_BIN_EXE_trc_node"), "descent", &["node.device:=cpu"], domain);
    let ctx = r2r::Context::create().expect("rcl context");
    let mut probe = r2r::Node::create(ctx, "trc_stamp_probe", "").expect("probe node");
    let goal_pub = probe.create_publisher::<Goal>("/goal", QosProfile::default().keep_last(1).transient_local()).expect("goal publisher");
    let state_pub = probe.create_publisher::<State>("/state", QosProfile::default()).expect("state publisher");
    let mut answers = probe.subscribe::<ControlSequence>("/control_sequence", QosProfile::default().keep_last(100)).expect("subscription");
    let goal = Goal { header: Header { stamp: now(), frame_id: "landing_site".into() }, x_target: vec![0.0; 7], t_go: 40.0 };
    goal_pub.publish(&goal).expect("publish goal");
    // states stamped with the wall clock (non-round nanoseconds, seconds ~1.8e9): 0.1 s apart
    let mut sent: HashSet<(i32, u32)> = HashSet::new();
    let mut got: Vec<Time> = Vec::new();
    let t = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(1);
    while got.len() < 20 && t.elapsed() < Duration::from_secs(60) {
        if last.elapsed() >= Duration::from_millis(100) {
            let stamp = now();
            sent.insert((stamp.sec, stamp.nanosec));
            let x = vec![120.0, -80.0, 1500.0, 5.0, -3.0, -60.0, 1850.0];
            state_pub.publish(&State { header: Header { stamp, frame_id: "landing_site".into() }, x }).expect("publish state");
            last = Instant::now();
        }
        probe.spin_once(Duration::from_millis(5));
        while let Some(Some(m)) = answers.next().now_or_never() {
            got.push(m.header.stamp);
        }
    }
    let log = common::stop(node, Duration::from_secs(5));
    assert!(got.len() >= 10, "{} answers in 60 s on ROS_DOMAIN_ID {domain}:\n{log}", got.len());
    let inexact: Vec<&Time> = got.iter().filter(|s| !sent.contains(&(s.sec, s.nanosec))).collect();
    assert!(inexact.is_empty(), "{} of {} answers are not stamped with a state's exact stamp, e.g. {:?}", inexact.len(), got.len(), inexact.first());
}
