//! ROS works: a ControlSequence published by one r2r node arrives unchanged in another, over
//! Fast DDS on this test's own ROS_DOMAIN_ID.

mod common;

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::trc_control::msg::ControlSequence;
use r2r::QosProfile;
use trc_control::ros::{plan_from_msg, plan_to_msg};

#[test]
fn control_sequence_round_trips_between_r2r_nodes() {
    let domain = common::isolate_ros_domain();
    let ctx = r2r::Context::create().expect("rcl context");
    let mut talker = r2r::Node::create(ctx.clone(), "trc_test_talker", "").expect("talker node");
    let mut listener = r2r::Node::create(ctx, "trc_test_listener", "").expect("listener node");
    let topic = "/trc_test/control_sequence";
    let publisher = talker.create_publisher::<ControlSequence>(topic, QosProfile::default()).expect("publisher");
    let mut sub = listener.subscribe::<ControlSequence>(topic, QosProfile::default()).expect("subscription");

    let sent = common::sample_plan();
    let msg = plan_to_msg(&sent);
    // Publish until discovery has matched and one arrives (volatile QoS drops earlier ones).
    let start = Instant::now();
    let mut last_pub = Instant::now() - Duration::from_secs(1);
    let received = loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no ControlSequence received within 30 s on ROS_DOMAIN_ID {domain}");
        if last_pub.elapsed() > Duration::from_millis(100) {
            publisher.publish(&msg).expect("publish");
            last_pub = Instant::now();
        }
        listener.spin_once(Duration::from_millis(10));
        if let Some(Some(m)) = sub.next().now_or_never() {
            break m;
        }
    };
    assert_eq!(received, msg, "message changed in transit");
    assert_eq!(plan_from_msg(&received).expect("decodes"), sent);
}
