//! The messages a bag of the controller holds, as plain Rust (serde) mirrors of their ROS 2
//! definitions, and their CDR encoding: what lets the ROS-free core read and write rosbag2
//! without r2r.
//!
//! Encoding: ROS 2's `cdr` message encoding is XCDR1, little endian, a 4-byte encapsulation
//! header `00 01 00 00` (CDR_LE) followed by the fields in declaration order, each primitive
//! aligned to its size relative to the end of the header; a string is a `u32` length counting
//! its NUL terminator, then the bytes and the NUL; a sequence is a `u32` count then the
//! elements (OMG DDS-XTypes 1.3, section 7.4.3; what rmw_fastrtps writes). The field layout
//! mirrors `msg/*.msg` of this package and the Jazzy interface packages (std_msgs,
//! builtin_interfaces, geometry_msgs, nav_msgs, rosgraph_msgs).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::BagError;
use crate::control::{GoalInput, StateInput};
use crate::plan::{Plan, PlanStatus};

/// The CDR_LE encapsulation header (representation identifier 0x0001, options 0).
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Encodes `msg` as a ROS 2 serialized message (encapsulation header + CDR little endian).
///
/// # Errors
/// [`BagError::Encode`] if serde cannot encode the value (not expected for these types).
pub fn to_cdr<T: Serialize>(type_name: &str, msg: &T) -> Result<Vec<u8>, BagError> {
    let body = cdr_encoding::to_vec::<T, byteorder::LittleEndian>(msg).map_err(|e| BagError::Encode { type_name: type_name.into(), what: e.to_string() })?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&CDR_LE_HEADER);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a ROS 2 serialized message of type `type_name` (used in the error only).
///
/// # Errors
/// [`BagError::Decode`] for a missing or big-endian/unknown encapsulation header, a body
/// shorter than its fields, or bad UTF-8 in a string.
pub fn from_cdr<T: DeserializeOwned>(type_name: &str, data: &[u8]) -> Result<T, BagError> {
    let err = |what: String| BagError::Decode { type_name: type_name.into(), what };
    if data.len() < 4 {
        return Err(err(format!("{} bytes, shorter than the 4-byte encapsulation header", data.len())));
    }
    match data[..2] {
        [0x00, 0x01] => {}
        [0x00, 0x00] => return Err(err("big-endian CDR (CDR_BE) is not supported; record on a little-endian machine".into())),
        _ => return Err(err(format!("encapsulation {:02x}{:02x} is not CDR_LE (0001)", data[0], data[1]))),
    }
    cdr_encoding::from_bytes::<T, byteorder::LittleEndian>(&data[4..]).map(|(v, _)| v).map_err(|e| err(e.to_string()))
}

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Time {
    /// Seconds.
    pub sec: i32,
    /// Nanoseconds, `[0, 1e9)`.
    pub nanosec: u32,
}

impl Time {
    /// From seconds [s] (the same rounding as the node's `ros::time_from_secs`).
    pub fn from_secs(t: f64) -> Self {
        let sec = t.floor();
        let nanosec = ((t - sec) * 1e9).round().min(999_999_999.0);
        Time { sec: sec as i32, nanosec: nanosec as u32 }
    }

    /// Seconds [s].
    pub fn secs(&self) -> f64 {
        self.sec as f64 + self.nanosec as f64 * 1e-9
    }

    /// Nanoseconds since the epoch (negative times clamp to 0), an MCAP log time.
    pub fn nanos(&self) -> u64 {
        (self.sec.max(0) as u64) * 1_000_000_000 + self.nanosec as u64
    }
}

/// `std_msgs/msg/Header`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Time stamp.
    pub stamp: Time,
    /// Frame.
    pub frame_id: String,
}

/// `trc_control/msg/State` (msg/State.msg): x, length n, problem units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateMsg {
    /// Stamp and frame of the state.
    pub header: Header,
    /// State x, length n.
    pub x: Vec<f64>,
}

/// `trc_control/msg/Goal` (msg/Goal.msg).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoalMsg {
    /// Issue time and frame of x_target.
    pub header: Header,
    /// Target state, length n.
    pub x_target: Vec<f64>,
    /// Time-to-go [s]; 0 = the controller chooses.
    pub t_go: f64,
}

/// `trc_control/msg/ControlSequence` (msg/ControlSequence.msg): `u` row-major `[N, m]`, `x`
/// row-major `[N + 1, n]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlSequenceMsg {
    /// Stamp of the state answered, its frame.
    pub header: Header,
    /// Step [s].
    pub dt: f64,
    /// n.
    pub state_dim: u32,
    /// m.
    pub control_dim: u32,
    /// Controls, row-major `[N, m]`.
    pub u: Vec<f64>,
    /// Predicted states, row-major `[N + 1, n]`.
    pub x: Vec<f64>,
    /// Predicted cost J.
    pub cost: f64,
    /// [`PlanStatus`] as `u8`.
    pub status: u8,
    /// Refinement iterations completed.
    pub iterations: u32,
    /// Wall time [ms].
    pub solve_time_ms: f64,
}

/// `std_msgs/msg/Float64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Float64Msg {
    /// The value.
    pub data: f64,
}

/// `std_msgs/msg/String`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StringMsg {
    /// The text.
    pub data: String,
}

/// `rosgraph_msgs/msg/Clock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockMsg {
    /// Sim time.
    pub clock: Time,
}

/// `geometry_msgs/msg/Vector3` (also the layout of `Point`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Vector3 {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
}

/// `geometry_msgs/msg/Quaternion`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
    /// w.
    pub w: f64,
}

impl Default for Quaternion {
    fn default() -> Self {
        Quaternion { x: 0.0, y: 0.0, z: 0.0, w: 1.0 }
    }
}

/// `geometry_msgs/msg/PoseWithCovariance` (pose = Point + Quaternion, covariance 6x6 row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoseWithCovariance {
    /// Position [m].
    pub position: Vector3,
    /// Orientation.
    pub orientation: Quaternion,
    /// Covariance, 36 entries (a fixed array: no length prefix in CDR).
    pub covariance: [[f64; 6]; 6],
}

/// `geometry_msgs/msg/TwistWithCovariance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwistWithCovariance {
    /// Linear velocity [m/s].
    pub linear: Vector3,
    /// Angular velocity [rad/s].
    pub angular: Vector3,
    /// Covariance, 36 entries.
    pub covariance: [[f64; 6]; 6],
}

/// `nav_msgs/msg/Odometry`: the descent state from a simulator or estimator (position in the
/// landing frame, the twist in `child_frame_id` per REP 105; mass comes on `mass`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OdometryMsg {
    /// Stamp, frame of the pose.
    pub header: Header,
    /// Frame of the twist.
    pub child_frame_id: String,
    /// Pose.
    pub pose: PoseWithCovariance,
    /// Twist.
    pub twist: TwistWithCovariance,
}

/// `geometry_msgs/msg/WrenchStamped`: the descent command (force = thrust [N]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WrenchStampedMsg {
    /// Stamp of the state answered.
    pub header: Header,
    /// Force [N].
    pub force: Vector3,
    /// Torque [N m].
    pub torque: Vector3,
}

/// ROS 2 type names (`pkg/msg/Type`) of the messages above.
pub mod types {
    /// `trc_control/msg/State`.
    pub const STATE: &str = "trc_control/msg/State";
    /// `trc_control/msg/Goal`.
    pub const GOAL: &str = "trc_control/msg/Goal";
    /// `trc_control/msg/ControlSequence`.
    pub const CONTROL_SEQUENCE: &str = "trc_control/msg/ControlSequence";
    /// `nav_msgs/msg/Odometry`.
    pub const ODOMETRY: &str = "nav_msgs/msg/Odometry";
    /// `std_msgs/msg/Float64`.
    pub const FLOAT64: &str = "std_msgs/msg/Float64";
    /// `std_msgs/msg/String`.
    pub const STRING: &str = "std_msgs/msg/String";
    /// `rosgraph_msgs/msg/Clock`.
    pub const CLOCK: &str = "rosgraph_msgs/msg/Clock";
    /// `geometry_msgs/msg/WrenchStamped`.
    pub const WRENCH_STAMPED: &str = "geometry_msgs/msg/WrenchStamped";
    /// `diagnostic_msgs/msg/DiagnosticArray`.
    pub const DIAGNOSTIC_ARRAY: &str = "diagnostic_msgs/msg/DiagnosticArray";
}

/// The controller's topics with their types (`trc_node`'s inputs and outputs, `docs/rosbags.md`):
/// what `trc record` records by default (with trc_sim's `/landing`) and what `node.record_to`
/// records. `descent` picks the command type (WrenchStamped; Float64 for the other problems).
pub fn controller_topics(descent: bool) -> [(&'static str, &'static str); 8] {
    [
        ("/state", types::STATE),
        ("/odom", types::ODOMETRY),
        ("/mass", types::FLOAT64),
        ("/goal", types::GOAL),
        ("/control_sequence", types::CONTROL_SEQUENCE),
        ("/command", if descent { types::WRENCH_STAMPED } else { types::FLOAT64 }),
        ("/diagnostics", types::DIAGNOSTIC_ARRAY),
        ("/clock", types::CLOCK),
    ]
}

impl StateMsg {
    /// The controller's input (the node's `ros::state_from_msg`).
    pub fn to_input(&self) -> StateInput {
        StateInput { stamp: self.header.stamp.secs(), frame_id: self.header.frame_id.clone(), x: self.x.clone() }
    }
}

impl GoalMsg {
    /// The controller's input (the node's `ros::goal_from_msg`).
    pub fn to_input(&self) -> GoalInput {
        GoalInput { frame_id: self.header.frame_id.clone(), stamp: self.header.stamp.secs(), x_target: self.x_target.clone(), t_go: self.t_go }
    }
}

impl OdometryMsg {
    /// The descent state `[r, v, m]` (the node's `ros::descent_state_from_odometry`); `None`
    /// without a mass.
    pub fn to_descent_input(&self, mass: Option<f64>) -> Option<StateInput> {
        let (p, v, q) = (&self.pose.position, &self.twist.linear, &self.pose.orientation);
        let in_child = !self.child_frame_id.is_empty() && self.child_frame_id != self.header.frame_id;
        let v = crate::control::io::odometry_velocity([v.x, v.y, v.z], [q.x, q.y, q.z, q.w], in_child);
        Some(StateInput { stamp: self.header.stamp.secs(), frame_id: self.header.frame_id.clone(), x: vec![p.x, p.y, p.z, v[0], v[1], v[2], mass?] })
    }
}

impl ControlSequenceMsg {
    /// The status, if it is one of the five constants.
    pub fn plan_status(&self) -> Option<PlanStatus> {
        PlanStatus::from_u8(self.status)
    }

    /// The plan this message carries (the node's `ros::plan_from_msg`, ROS-free); `None` for a
    /// zero dimension, arrays that are not whole rows, or an unknown status.
    pub fn to_plan(&self) -> Option<Plan> {
        let (n, m) = (self.state_dim as usize, self.control_dim as usize);
        if n == 0 || m == 0 || !self.x.len().is_multiple_of(n) || !self.u.len().is_multiple_of(m) {
            return None;
        }
        Some(Plan {
            stamp: self.header.stamp.secs(),
            frame_id: self.header.frame_id.clone(),
            dt: self.dt,
            u: nalgebra::DMatrix::from_row_slice(self.u.len() / m, m, &self.u),
            x: nalgebra::DMatrix::from_row_slice(self.x.len() / n, n, &self.x),
            cost: self.cost,
            status: self.plan_status()?,
            iterations: self.iterations,
            solve_time_ms: self.solve_time_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_encodes_as_ros2_writes_it() {
        // stamp (8), frame_id "ab" (len 3 incl. NUL + 3 bytes, padded to 4-byte alignment for
        // the sequence count), x count, padding to 8, two f64
        let m = StateMsg { header: Header { stamp: Time { sec: 1, nanosec: 2 }, frame_id: "ab".into() }, x: vec![1.5, -2.0] };
        let b = to_cdr(types::STATE, &m).unwrap();
        let mut want = vec![0u8, 1, 0, 0];
        want.extend(1i32.to_le_bytes());
        want.extend(2u32.to_le_bytes());
        want.extend(3u32.to_le_bytes());
        want.extend(b"ab\0");
        want.push(0); // pad to 4
        want.extend(2u32.to_le_bytes());
        want.extend([0u8; 4]); // pad to 8 (offset 20 -> 24)
        want.extend(1.5f64.to_le_bytes());
        want.extend((-2.0f64).to_le_bytes());
        assert_eq!(b, want);
        assert_eq!(from_cdr::<StateMsg>(types::STATE, &b).unwrap(), m);
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let m = ControlSequenceMsg { u: vec![1.0; 150], x: vec![2.0; 357], control_dim: 3, state_dim: 7, ..Default::default() };
        let b = to_cdr(types::CONTROL_SEQUENCE, &m).unwrap();
        for cut in [0, 3, 4, 10, b.len() / 2, b.len() - 1] {
            assert!(from_cdr::<ControlSequenceMsg>(types::CONTROL_SEQUENCE, &b[..cut]).is_err(), "cut at {cut}");
        }
        let mut be = b.clone();
        be[1] = 0;
        assert!(matches!(from_cdr::<ControlSequenceMsg>(types::CONTROL_SEQUENCE, &be), Err(BagError::Decode { .. })));
        // a sequence count far beyond the data
        let mut huge = to_cdr(types::STATE, &StateMsg::default()).unwrap();
        let n = huge.len();
        huge[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(from_cdr::<StateMsg>(types::STATE, &huge).is_err());
        assert_eq!(from_cdr::<ControlSequenceMsg>(types::CONTROL_SEQUENCE, &b).unwrap(), m);
    }

    #[test]
    fn time_round_trips_like_the_node() {
        for t in [0.0, 12.25, 1_700_000_123.456_789] {
            let r = Time::from_secs(t);
            assert!((r.secs() - t).abs() < 1e-6);
        }
    }
}
