//! RViz view of the plan (issue: robot and simulator integration, "the predicted trajectory and
//! the landing site as visualization_msgs/MarkerArray"): a running descent trc_node answers a
//! state over loopback DDS and publishes `plan_markers`: the predicted trajectory from the
//! state's position, the landing site and the thrust, in the plan's frame.

mod common;

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use r2r::std_msgs::msg::Header;
use r2r::trc_control::msg::{Goal, State};
use r2r::visualization_msgs::msg::{Marker, MarkerArray};
use r2r::QosProfile;
use trc_control::ros::markers::{ID_SITE, ID_THRUST, ID_TRAJECTORY};
use trc_control::ros::wall_time_now as now;

#[test]
fn a_descent_answer_is_drawn_as_markers() {
    let domain = common::isolate_ros_domain();
    let node = common::spawn_node(env!("CARGO_BIN_EXE_trc_node"), "descent", &["node.device:=cpu"], domain);
    let ctx = r2r::Context::create().expect("rcl context");
    let mut probe = r2r::Node::create(ctx, "trc_marker_probe", "").expect("probe node");
    let goal_pub = probe.create_publisher::<Goal>("/goal", QosProfile::default().keep_last(1).transient_local()).expect("goal publisher");
    let state_pub = probe.create_publisher::<State>("/state", QosProfile::default()).expect("state publisher");
    let mut markers = probe.subscribe::<MarkerArray>("/plan_markers", QosProfile::default()).expect("markers subscription");
    let x0 = [150.0, 50.0, 600.0, -10.0, 0.0, -45.0, 1750.0];
    let mut got: Option<MarkerArray> = None;
    let t = Instant::now();
    let mut goal_sent = false;
    while got.is_none() && t.elapsed() < Duration::from_secs(40) {
        let stamp = now();
        if !goal_sent {
            goal_pub
                .publish(&Goal {
                    header: Header { stamp: stamp.clone(), frame_id: "landing_site".into() },
                    x_target: vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1505.0],
                    t_go: 20.0,
                })
                .unwrap();
            goal_sent = true;
        }
        state_pub.publish(&State { header: Header { stamp, frame_id: "landing_site".into() }, x: x0.to_vec() }).unwrap();
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            probe.spin_once(Duration::from_millis(5));
            while let Some(Some(m)) = markers.next().now_or_never() {
                // a refined answer (green; the first may be FAILED, red: a state before the goal)
                if m.markers.iter().any(|k| k.id == ID_TRAJECTORY && k.points.len() > 2 && k.color.g > 0.8 && k.color.r < 0.5) {
                    got = Some(m);
                }
            }
        }
    }
    let log = common::stop(node, Duration::from_secs(5));
    let m = got.unwrap_or_else(|| panic!("no plan_markers within 40 s (ROS_DOMAIN_ID {domain}):\n{log}"));
    let traj = m.markers.iter().find(|k| k.id == ID_TRAJECTORY).unwrap();
    assert_eq!(traj.type_, Marker::LINE_STRIP as i32);
    assert_eq!(traj.header.frame_id, "landing_site");
    assert_eq!(traj.points.len(), 51, "N + 1 predicted states");
    let p0 = &traj.points[0];
    assert!((p0.x - x0[0]).abs() < 1e-6 && (p0.z - x0[2]).abs() < 1e-6, "the trajectory starts at the state: {p0:?}");
    let end = traj.points.last().unwrap();
    assert!(end.z < 5.0 && end.x.hypot(end.y) < 5.0, "and ends near the site: {end:?}");
    let site = m.markers.iter().find(|k| k.id == ID_SITE).expect("the landing site");
    assert_eq!((site.pose.position.x, site.pose.position.y, site.pose.position.z), (0.0, 0.0, 0.0));
    let arrow = m.markers.iter().find(|k| k.id == ID_THRUST).expect("the thrust");
    assert_eq!(arrow.points.len(), 2);
    assert!(arrow.points[1].z > arrow.points[0].z, "thrust points up while braking");
}
