//! The Gazebo assets (issue: robot and simulator integration; docs/gazebo.md): the world is valid
//! SDF 1.9 (`ign sdf -k`, every error line fails), matches the vehicle and scenario it claims, and
//! the ros_gz_bridge configuration agrees with the world's topics, with the topics trc_node and
//! gazebo/lander_adapter.py use, and with the message definitions installed here. Gazebo itself
//! is not run (not installable on these machines).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use trc_control::config::TrcConfig;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of the first `<tag>...</tag>` after `from` in `xml`.
fn element<'a>(xml: &'a str, from: &str, tag: &str) -> &'a str {
    let start = xml.find(from).unwrap_or_else(|| panic!("no `{from}` in the world"));
    let rest = &xml[start..];
    let open = format!("<{tag}>");
    let a = rest.find(&open).unwrap_or_else(|| panic!("no <{tag}> after `{from}`")) + open.len();
    let b = a + rest[a..].find(&format!("</{tag}>")).unwrap();
    rest[a..b].trim()
}

fn numbers(s: &str) -> Vec<f64> {
    s.split_whitespace().map(|v| v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))).collect()
}

#[test]
fn the_world_is_valid_sdf_1_9() {
    let world = root().join("gazebo/worlds/mars_landing.sdf");
    let out = Command::new("ign").args(["sdf", "-k"]).arg(&world).output().expect("`ign` not found: make setup installs ignition-tools and libsdformat-dev");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    assert!(errors.is_empty(), "ign sdf -k reports errors:\n{text}");
    assert!(text.contains("Valid."), "ign sdf -k did not say Valid:\n{text}");
    assert!(read("gazebo/worlds/mars_landing.sdf").contains("<sdf version=\"1.9\">"), "spec 1.9 (what Harmonic and these tools read)");
}

#[test]
fn an_invalid_world_is_caught_by_the_same_check() {
    // the check above can fail: a world with a bad value yields error lines (and still exit 0)
    let bad = read("gazebo/worlds/mars_landing.sdf").replace("<mass>1750</mass>", "<mass>heavy</mass>");
    let path = std::env::temp_dir().join(format!("trc-bad-world-{}.sdf", std::process::id()));
    std::fs::write(&path, bad).unwrap();
    let out = Command::new("ign").args(["sdf", "-k"]).arg(&path).output().expect("ign");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.contains("Error")), "a bad <mass> must be reported:\n{text}");
}

#[test]
fn the_world_is_the_configured_vehicle_at_the_scenario_start() {
    let sdf = read("gazebo/worlds/mars_landing.sdf");
    let cfg = TrcConfig::from_file(root().join("config/descent.yaml")).unwrap();
    let d = &cfg.problem.descent;
    assert_eq!(numbers(element(&sdf, "<world", "gravity")), d.gravity.to_vec(), "Mars gravity of config/descent.yaml");
    let scenario: serde_yaml::Value = serde_yaml::from_str(&read("scenarios/short_landing.yaml")).unwrap();
    let x0: Vec<f64> = scenario["x0"].as_sequence().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mass = numbers(element(&sdf, "<model name=\"lander\">", "mass"))[0];
    assert_eq!(mass, x0[6], "the scenario's mass");
    assert!(mass > d.m_dry && mass <= d.m_wet);
    let pose = numbers(element(&sdf, "<model name=\"lander\">", "pose"));
    let offset = numbers(element(&sdf, "OdometryPublisher", "xyz_offset"));
    assert_eq!([pose[0], pose[1], pose[2] + offset[2]], [x0[0], x0[1], x0[2]], "the reported base starts at the scenario's position");
    for axis in ["ixx", "iyy", "izz"] {
        assert!(numbers(element(&sdf, "<model name=\"lander\">", axis))[0] > 0.0);
    }
    assert_eq!(element(&sdf, "OdometryPublisher", "odom_frame"), "landing_site", "the frame trc_sim and the goals use");
    assert_eq!(element(&sdf, "OdometryPublisher", "dimensions"), "3");
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeEntry {
    ros_topic_name: String,
    gz_topic_name: String,
    ros_type_name: String,
    gz_type_name: String,
    direction: String,
}

/// Where this machine's ROS message definitions are (`share/<pkg>/msg/<Type>.msg`).
fn msg_file(ros_type: &str) -> Option<PathBuf> {
    let (pkg, name) = ros_type.split_once("/msg/")?;
    std::env::var("AMENT_PREFIX_PATH")
        .unwrap_or_default()
        .split(':')
        .chain(std::env::var("VIRTUAL_ENV").ok().as_deref())
        .map(|p| Path::new(p).join("share").join(pkg).join("msg").join(format!("{name}.msg")))
        .find(|p| p.exists())
}

#[test]
fn the_bridge_agrees_with_the_world_the_node_the_adapter_and_the_messages() {
    let entries: Vec<BridgeEntry> = serde_yaml::from_str(&read("gazebo/bridge.yaml")).unwrap();
    let sdf = read("gazebo/worlds/mars_landing.sdf");
    let node = read("src/bin/trc_node.rs");
    let adapter = read("gazebo/lander_adapter.py");
    let world_name = sdf.split("<world name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
    // the pairs ros_gz_bridge converts (its README's table) for the types used here
    let pairs = [
        ("nav_msgs/msg/Odometry", "gz.msgs.Odometry"),
        ("rosgraph_msgs/msg/Clock", "gz.msgs.Clock"),
        ("ros_gz_interfaces/msg/EntityWrench", "gz.msgs.EntityWrench"),
    ];
    let mut seen = Vec::new();
    for e in &entries {
        assert!(pairs.contains(&(e.ros_type_name.as_str(), e.gz_type_name.as_str())), "{e:?}: not a pair ros_gz_bridge converts");
        assert!(["GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL"].contains(&e.direction.as_str()), "{e:?}: direction");
        match e.ros_type_name.as_str() {
            // not installable here (no ros_gz wheels): the adapter must speak it
            "ros_gz_interfaces/msg/EntityWrench" => {
                assert!(
                    adapter.contains("EntityWrench") && adapter.contains(&format!("\"{}\"", e.ros_topic_name)),
                    "lander_adapter.py publishes {}",
                    e.ros_topic_name
                );
                assert_eq!(e.gz_topic_name, format!("/world/{world_name}/wrench/persistent"), "ApplyLinkWrench's persistent topic of this world");
                assert!(sdf.contains("gz-sim-apply-link-wrench-system"), "the world loads ApplyLinkWrench");
                assert_eq!(e.direction, "ROS_TO_GZ");
            }
            t => assert!(msg_file(t).is_some(), "{t}: no message definition installed (AMENT_PREFIX_PATH)"),
        }
        seen.push(e.ros_topic_name.as_str());
    }
    let odom = entries.iter().find(|e| e.ros_topic_name == "odom").expect("an odom entry");
    assert_eq!(odom.gz_topic_name, element(&sdf, "OdometryPublisher", "odom_topic"), "the world's odometry topic");
    assert_eq!(odom.direction, "GZ_TO_ROS");
    assert!(node.contains("subscribe::<Odometry>(\"odom\"") || node.contains("\"odom\""), "trc_node reads `odom`");
    assert!(seen.contains(&"/clock") && sdf.contains("gz-sim-physics-system"), "sim time comes from Gazebo's /clock");
    // the rest of the node's interface is the adapter's: command in, mass and goal out
    for (topic, what) in [("command", "WrenchStamped"), ("mass", "Float64"), ("goal", "Goal")] {
        assert!(adapter.contains(&format!("\"{topic}\"")) && adapter.contains(what), "lander_adapter.py: `{topic}` ({what})");
        assert!(node.contains(&format!("\"{topic}\"")), "trc_node: `{topic}`");
    }
    // every file the launch file names exists, and the package installs gazebo/
    let launch = read("launch/descent_gazebo.launch.py");
    for f in ["'worlds', 'mars_landing.sdf'", "'bridge.yaml'", "'lander_adapter.py'", "'config', 'descent.yaml'", "'use_sim_time': True"] {
        assert!(launch.contains(f), "descent_gazebo.launch.py: {f}");
    }
    assert!(read("CMakeLists.txt").contains("launch config models gazebo"), "CMakeLists.txt installs gazebo/ to share/");
}
