//! /diagnostics tells the truth (issue: reliability): a streak of FAILED answers turns the level
//! to ERROR naming the reason, and the report keeps its period under a 1 kHz flood of states
//! (before, the tick starved: gaps of 2-4 s with `rate_hz 0.00`, and the level stayed OK through
//! 25 FAILED answers in a row). trc_node over loopback DDS on this test's own ROS_DOMAIN_ID.

mod common;

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::std_msgs::msg::Header;
use r2r::trc_control::msg::{Goal, State};
use r2r::QosProfile;

use trc_control::ros::wall_time_now as now;

#[test]
fn a_failed_streak_is_an_error_and_the_report_keeps_its_period_under_a_flood() {
    let domain = common::isolate_ros_domain();
    let node = common::spawn_node(env!("CARGO_BIN_EXE_trc_node"), "descent", &["node.device:=cpu", "node.diagnostics_period_s:=0.5"], domain);
    let ctx = r2r::Context::create().expect("rcl context");
    let mut probe = r2r::Node::create(ctx, "trc_diag_probe", "").expect("probe node");
    let goal_pub = probe.create_publisher::<Goal>("/goal", QosProfile::default().keep_last(1).transient_local()).expect("goal publisher");
    let state_pub = probe.create_publisher::<State>("/state", QosProfile::default()).expect("state publisher");
    let mut diags = probe.subscribe::<DiagnosticArray>("/diagnostics", QosProfile::default()).expect("diagnostics subscription");
    goal_pub.publish(&Goal { header: Header { stamp: now(), frame_id: "landing_site".into() }, x_target: vec![0.0; 7], t_go: 40.0 }).expect("publish goal");
    // wait for the node's first report (it is up), then flood it for 4 s with states of the
    // wrong length (each answered FAILED) at about 1 kHz
    let mut got: Vec<(Instant, u8, String, String)> = Vec::new();
    let collect = |probe: &mut r2r::Node, diags: &mut _, got: &mut Vec<(Instant, u8, String, String)>| {
        probe.spin_once(Duration::from_millis(1));
        let diags: &mut (dyn futures::Stream<Item = DiagnosticArray> + Unpin) = diags;
        while let Some(Some(d)) = diags.next().now_or_never() {
            for s in d.status {
                let reason = s.values.iter().find(|k| k.key == "last_failure_reason").map(|k| k.value.clone()).unwrap_or_default();
                got.push((Instant::now(), s.level, s.message.clone(), reason));
            }
        }
    };
    let t = Instant::now();
    while got.is_empty() && t.elapsed() < Duration::from_secs(30) {
        collect(&mut probe, &mut diags, &mut got);
    }
    assert!(!got.is_empty(), "no /diagnostics within 30 s on ROS_DOMAIN_ID {domain}:\n{}", common::stop(node, Duration::from_secs(5)));
    let flood_start = Instant::now();
    let mut sent = 0u64;
    while flood_start.elapsed() < Duration::from_secs(4) {
        state_pub.publish(&State { header: Header { stamp: now(), frame_id: "landing_site".into() }, x: vec![0.0; 3] }).expect("publish state");
        sent += 1;
        collect(&mut probe, &mut diags, &mut got);
    }
    // a last report after the flood
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        collect(&mut probe, &mut diags, &mut got);
    }
    let log = common::stop(node, Duration::from_secs(5));
    let during: Vec<&(Instant, u8, String, String)> = got.iter().filter(|g| g.0 >= flood_start).collect();
    let rate = sent as f64 / 4.0;
    assert!(rate > 300.0, "the flood reached only {rate:.0} Hz");
    // period 0.5 s: at least 6 reports in the 5 s after the flood started, no gap over 1.5 s
    assert!(during.len() >= 6, "{} reports in the 5 s after a {rate:.0} Hz flood started:\n{log}", during.len());
    let gap = during.windows(2).map(|w| w[1].0.duration_since(w[0].0).as_secs_f64()).fold(0.0, f64::max);
    assert!(gap < 1.5, "a {gap:.2} s gap between reports under the flood");
    let error = during
        .iter()
        .find(|g| g.1 == 2 && g.2.contains("FAILED answers in a row"))
        .unwrap_or_else(|| panic!("no ERROR report of the FAILED streak during the flood: {during:#?}"));
    assert!(error.3.starts_with("wrong_dimension"), "last_failure_reason {:?}", error.3);
}
