//! Rosbag2 MCAP bags without ROS 2 (the ROS-free core, `src/bag`): the shipped landing bag
//! (recorded over DDS by `make bags`) replays through the controller core plan for plan; the
//! fault bag's faults are each answered with their status and reason, no NaN command, the last
//! good plan kept; malformed and truncated bags are refused naming the file and the offset;
//! another controller setting is caught as a regression; the writer and reader round-trip.

use std::path::{Path, PathBuf};

use trc_control::bag::msgs::{self, types, ClockMsg, ControlSequenceMsg, GoalMsg, Header, StateMsg, Time};
use trc_control::bag::replay::{replay, DeadlineMode, ReplayOptions, ReplayReport, Verdict};
use trc_control::bag::schema::MsgPath;
use trc_control::bag::{Bag, BagError, BagWriter, Qos};
use trc_control::config::TrcConfig;
use trc_control::control::RecedingHorizon;
use trc_control::plan::PlanStatus;

/// Largest |u - u_rec| [N] accepted between the recorded and the replayed plans of the shipped
/// bag. Bit-identical (0) on the machine that recorded it; the margin covers a CPU whose
/// libtorch kernels round differently (thrust is ~1e4 N).
const TOL_U_N: f64 = 1e-3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn controller(edit: impl FnOnce(&mut TrcConfig)) -> RecedingHorizon {
    let mut cfg = TrcConfig::from_file(root().join("config/descent.yaml")).unwrap();
    cfg.controller.deadline_s = 10.0;
    edit(&mut cfg);
    RecedingHorizon::from_config(&cfg, Some(&root())).unwrap()
}

fn replay_of(bag: &Path, mode: DeadlineMode, edit: impl FnOnce(&mut TrcConfig)) -> ReplayReport {
    let bag = Bag::open(bag).unwrap();
    let mut c = controller(edit);
    replay(&bag, &mut c, &ReplayOptions { deadline: mode, tol_u: TOL_U_N, ..Default::default() }).unwrap()
}

#[test]
fn the_shipped_landing_replays_plan_for_plan() {
    let r = replay_of(&root().join("tests/data/landing"), DeadlineMode::Recorded, |_| {});
    assert!(r.cycles.len() >= 200, "{}", r.summary());
    assert!(r.passed(), "{}\n{}", r.summary(), r.table(10));
    assert_eq!(r.count(Verdict::Match), r.cycles.len(), "{}", r.summary());
    assert_eq!((r.skipped_states, r.unmatched_answers), (0, 0), "the bag holds the whole flight: {}", r.summary());
    // outputs and trc_sim's result are not inputs: skipped with a warning, not an error
    for t in ["/command", "/diagnostics", "/landing"] {
        assert!(r.ignored_topics.iter().any(|i| i == t), "{t} not reported as skipped: {:?}", r.ignored_topics);
    }
    // the flight lands: the last plans are the terminal phase
    assert_eq!(r.cycles.last().map(|c| c.status), Some(PlanStatus::Terminal));
}

#[test]
fn the_fault_bag_answers_each_fault_with_its_status_and_reason() {
    let r = replay_of(&root().join("tests/data/faults"), DeadlineMode::Ignore, |_| {});
    assert!(r.cycles.iter().all(|c| c.command_finite), "a NaN command");
    let failed: Vec<_> = r.cycles.iter().filter(|c| c.status == PlanStatus::Failed).collect();
    let has = |needle: &str| failed.iter().any(|c| c.reason.as_deref().is_some_and(|s| s.contains(needle)));
    assert!(has("state.x[2] is NaN"), "NaN state: {:?}", failed.iter().map(|c| &c.reason).collect::<Vec<_>>());
    assert!(has("stale state: 5.0"), "stale stamp");
    assert!(has("6 entries"), "wrong length");
    assert_eq!(failed.iter().filter(|c| c.reason.as_deref().is_some_and(|s| s.contains("time jumped backwards"))).count(), 2, "the two states 10 s back");
    assert_eq!(failed.len(), 5, "exactly the five injected states fail: {}", r.table(80));
    // every refused state keeps the last good plan; every good state after a fault is refined again
    assert!(failed.iter().all(|c| c.kept_last_plan));
    let good_after: Vec<_> = r.cycles.iter().skip_while(|c| c.status != PlanStatus::Failed).filter(|c| c.status != PlanStatus::Failed).collect();
    assert!(!good_after.is_empty() && good_after.iter().all(|c| !c.kept_last_plan), "good states after a fault get new plans");
    // the goal change mid-flight is accepted (two goals, neither refused)
    assert_eq!(r.goals.len(), 2);
    assert!(r.goals.iter().all(|(_, why)| why.is_none()), "{:?}", r.goals);
}

#[test]
fn another_controller_setting_is_caught_as_a_regression() {
    // the regression check of a new config: the terminal correction off changes the plans
    let r = replay_of(&root().join("tests/data/landing"), DeadlineMode::Recorded, |c| c.controller.terminal_correction.enabled = false);
    assert!(!r.passed(), "{}", r.summary());
    assert!(r.count(Verdict::Differs) > r.cycles.len() / 2, "{}", r.summary());
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trc-rosbag-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn malformed_and_truncated_bags_are_refused_naming_the_file_and_offset() {
    let src = std::fs::read(root().join("tests/data/landing/landing_0.mcap")).unwrap();
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // truncated in the middle (a recorder killed before closing the file)
    let p = file("cut.mcap", &src[..src.len() / 2]);
    match Bag::open(&p) {
        Err(e @ BagError::Truncated { .. }) | Err(e @ BagError::Malformed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("cut.mcap") && msg.contains("offset"), "{msg}");
        }
        other => panic!("a truncated bag must be refused: {other:?}"),
    }
    // garbage in the data section: a chunk that does not decompress or fails its CRC
    let mut bad = src.clone();
    for b in &mut bad[src.len() / 3..src.len() / 3 + 64] {
        *b ^= 0x5a;
    }
    let p = file("garbled.mcap", &bad);
    let e = Bag::open(&p).expect_err("a garbled bag must be refused");
    assert!(matches!(e, BagError::Malformed { .. } | BagError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("garbled.mcap") && e.to_string().contains("offset"), "{e}");
    // not an MCAP file; an empty folder
    let p = file("text.mcap", b"not a bag at all");
    assert!(matches!(Bag::open(&p), Err(BagError::NotABag { .. })));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(Bag::open(&empty), Err(BagError::NotABag { .. })));
    // hostile records: a short attachment, a chunk claiming 1 TiB, a record inside a chunk
    // claiming 2^60 bytes (each refused before anything is allocated or sliced)
    let record = |op: u8, body: &[u8]| -> Vec<u8> {
        let mut r = vec![op];
        r.extend((body.len() as u64).to_le_bytes());
        r.extend(body);
        r
    };
    let chunk = |uncompressed: u64, records: &[u8]| -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(uncompressed.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u32.to_le_bytes()); // compression "" (none)
        b.extend((records.len() as u64).to_le_bytes());
        b.extend(records);
        record(0x06, &b)
    };
    let magic = [0x89u8, b'M', b'C', b'A', b'P', 0x30, b'\r', b'\n'];
    let mut inner = vec![0x05u8];
    inner.extend((1u64 << 60).to_le_bytes());
    for (name, rec) in [("attach.mcap", record(0x09, &[0u8; 33])), ("huge.mcap", chunk(1 << 40, &[])), ("inner.mcap", chunk(inner.len() as u64, &inner))] {
        let mut bytes = magic.to_vec();
        bytes.extend(rec);
        bytes.extend(magic);
        let p = file(name, &bytes);
        match Bag::open(&p) {
            Ok(b) => assert!(b.messages.is_empty(), "{name}"),
            Err(e) => assert!(e.to_string().contains(name), "{name}: {e}"),
        }
    }
    // every prefix of the file: refused or read, never a panic
    for cut in (0..src.len()).step_by(src.len() / 97 + 1) {
        let p = file("prefix.mcap", &src[..cut]);
        assert!(Bag::open(&p).is_err(), "a {cut}-byte prefix was accepted");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bag_round_trips_through_the_writer_and_the_reader() {
    let dir = tmp("rt");
    let mut w = BagWriter::create(&dir, MsgPath::from_env(Some(&root()))).unwrap();
    assert!(matches!(BagWriter::create(&dir, MsgPath::default()), Err(BagError::Exists(_))), "never overwrites");
    // schemas need the installed interface packages (trc-env.sh sources them)
    for (t, ty) in [("/state", types::STATE), ("/goal", types::GOAL), ("/clock", types::CLOCK), ("/control_sequence", types::CONTROL_SEQUENCE)] {
        w.add_topic(t, ty, Qos::of_topic(t)).unwrap();
    }
    let header = |t: f64| Header { stamp: Time::from_secs(t), frame_id: "landing_site".into() };
    let state = StateMsg { header: header(1.5), x: vec![1.0, -2.0, 300.0, 0.5, 0.0, -10.0, 1800.0] };
    let goal = GoalMsg { header: header(1.0), x_target: vec![0.0; 7], t_go: 20.0 };
    let seq = ControlSequenceMsg {
        header: header(1.5),
        dt: 0.4,
        state_dim: 7,
        control_dim: 3,
        u: vec![1.25; 150],
        x: vec![-3.5; 357],
        cost: 9.0,
        status: 4,
        iterations: 3,
        solve_time_ms: 1.5,
    };
    w.write_msg("/goal", 1_000_000_000, &goal).unwrap();
    w.write_msg("/clock", 1_500_000_000, &ClockMsg { clock: Time::from_secs(1.5) }).unwrap();
    w.write_msg("/state", 1_500_000_000, &state).unwrap();
    w.write_msg("/control_sequence", 1_510_000_000, &seq).unwrap();
    assert!(matches!(w.write("/nope", 0, &[]), Err(BagError::UnknownTopic(_))));
    let out = w.finish().unwrap();
    let meta: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(out.join("metadata.yaml")).unwrap()).unwrap();
    let info = &meta["rosbag2_bagfile_information"];
    assert_eq!(info["storage_identifier"].as_str(), Some("mcap"));
    assert_eq!(info["message_count"].as_u64(), Some(4));
    let bag = Bag::open(&out).unwrap();
    assert_eq!(bag.messages.len(), 4);
    assert_eq!(bag.topics["/state"].type_name, types::STATE);
    assert_eq!(Qos::from_yaml(&bag.topics["/state"].qos_yaml), Some(Qos::of_topic("state")));
    let read_seq: ControlSequenceMsg = msgs::from_cdr(types::CONTROL_SEQUENCE, &bag.on("control_sequence").next().unwrap().data).unwrap();
    assert_eq!(read_seq, seq);
    let read_state: StateMsg = msgs::from_cdr(types::STATE, &bag.on("/state").next().unwrap().data).unwrap();
    assert_eq!(read_state, state);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bag_of_odometry_and_mass_replays_like_the_same_states() {
    // the Gazebo / robot path: nav_msgs/Odometry + std_msgs/Float64 mass instead of State
    use trc_control::bag::msgs::{Float64Msg, OdometryMsg, PoseWithCovariance, Quaternion, TwistWithCovariance, Vector3};
    let src = Bag::open(&root().join("tests/data/landing")).unwrap();
    let dir = tmp("odom");
    let mut w = BagWriter::create(&dir, MsgPath::from_env(Some(&root()))).unwrap();
    for (t, ty) in [("/goal", types::GOAL), ("/clock", types::CLOCK), ("/odom", types::ODOMETRY), ("/mass", types::FLOAT64)] {
        w.add_topic(t, ty, Qos::of_topic(t)).unwrap();
    }
    let mut n = 0;
    for m in src.messages.iter().take(120) {
        match m.topic.as_str() {
            "/goal" | "/clock" => w.write(&m.topic, m.log_time_ns, &m.data).unwrap(),
            "/state" => {
                let s: StateMsg = msgs::from_cdr(types::STATE, &m.data).unwrap();
                let x = &s.x;
                w.write_msg("/mass", m.log_time_ns, &Float64Msg { data: x[6] }).unwrap();
                let odom = OdometryMsg {
                    header: s.header.clone(),
                    child_frame_id: "lander".into(),
                    pose: PoseWithCovariance { position: Vector3 { x: x[0], y: x[1], z: x[2] }, orientation: Quaternion::default(), covariance: [[0.0; 6]; 6] },
                    twist: TwistWithCovariance { linear: Vector3 { x: x[3], y: x[4], z: x[5] }, angular: Vector3::default(), covariance: [[0.0; 6]; 6] },
                };
                w.write_msg("/odom", m.log_time_ns, &odom).unwrap();
                n += 1;
            }
            _ => {}
        }
    }
    let out = w.finish().unwrap();
    let from_odom = replay_of(&out, DeadlineMode::Ignore, |_| {});
    // the same states through State: the first n cycles of the shipped bag, without its answers
    let states_only = tmp("states");
    let mut w = BagWriter::create(&states_only, MsgPath::from_env(Some(&root()))).unwrap();
    for (t, ty) in [("/goal", types::GOAL), ("/clock", types::CLOCK), ("/state", types::STATE)] {
        w.add_topic(t, ty, Qos::of_topic(t)).unwrap();
    }
    for m in src.messages.iter().take(120).filter(|m| ["/goal", "/clock", "/state"].contains(&m.topic.as_str())) {
        w.write(&m.topic, m.log_time_ns, &m.data).unwrap();
    }
    let from_state = replay_of(&w.finish().unwrap(), DeadlineMode::Ignore, |_| {});
    assert_eq!(from_odom.cycles.len(), n);
    assert_eq!(from_state.cycles.len(), n);
    assert!(n > 20);
    for (a, b) in from_odom.cycles.iter().zip(&from_state.cycles) {
        assert_eq!((a.stamp, a.status, a.iterations), (b.stamp, b.status, b.iterations));
        assert_eq!(a.terminal_error, b.terminal_error, "the same state must give the same plan");
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&states_only);
}
