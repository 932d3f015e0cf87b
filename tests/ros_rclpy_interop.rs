//! ROS works with an independent client: an rclpy subscriber (another process, another client
//! library) receives the ControlSequence an r2r node publishes, unchanged.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use r2r::trc_control::msg::ControlSequence;
use r2r::QosProfile;
use trc_control::ros::plan_to_msg;

fn python() -> String {
    std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into())
}

#[test]
fn rclpy_subscriber_receives_control_sequence() {
    let domain = common::isolate_ros_domain();
    let topic = "/trc_test/control_sequence_py";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ros/rclpy_listener.py");
    let mut child = Command::new(python())
        .args([script, topic, "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rclpy listener (is trc-env.sh sourced?)");

    let ctx = r2r::Context::create().expect("rcl context");
    let mut node = r2r::Node::create(ctx, "trc_test_talker_py", "").expect("node");
    let publisher = node.create_publisher::<ControlSequence>(topic, QosProfile::default()).expect("publisher");
    let msg = plan_to_msg(&common::sample_plan());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for listener") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(45), "rclpy listener did not finish (ROS_DOMAIN_ID {domain})");
        publisher.publish(&msg).expect("publish");
        node.spin_once(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "rclpy listener failed ({status}): {err}");

    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON from listener ({e}): {out}"));
    let f64s = |k: &str| -> Vec<f64> { v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    assert_eq!(v["stamp_sec"].as_i64().unwrap(), msg.header.stamp.sec as i64);
    assert_eq!(v["stamp_nanosec"].as_u64().unwrap(), msg.header.stamp.nanosec as u64);
    assert_eq!(v["frame_id"], msg.header.frame_id.as_str());
    assert_eq!(v["dt"].as_f64().unwrap(), msg.dt);
    assert_eq!(v["state_dim"].as_u64().unwrap(), 7);
    assert_eq!(v["control_dim"].as_u64().unwrap(), 3);
    assert_eq!(f64s("u"), msg.u, "u changed in transit");
    assert_eq!(f64s("x"), msg.x, "x changed in transit");
    assert_eq!(v["cost"].as_f64().unwrap(), msg.cost);
    assert_eq!(v["status"].as_u64().unwrap(), ControlSequence::FALLBACK_SHIFTED as u64);
    assert_eq!(v["FALLBACK_SHIFTED"].as_u64().unwrap(), ControlSequence::FALLBACK_SHIFTED as u64, "rclpy and r2r disagree on the constant");
    assert_eq!(v["ANYTIME"].as_u64().unwrap(), ControlSequence::ANYTIME as u64);
    assert_eq!(v["TERMINAL"].as_u64().unwrap(), ControlSequence::TERMINAL as u64, "the TERMINAL constant reaches rclpy");
    assert_eq!(ControlSequence::TERMINAL as u8, trc_control::plan::PlanStatus::Terminal as u8);
    assert_eq!(v["iterations"].as_u64().unwrap(), 3);
    assert_eq!(v["solve_time_ms"].as_f64().unwrap(), msg.solve_time_ms);
}
