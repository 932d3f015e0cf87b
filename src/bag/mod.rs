//! Rosbag2 (MCAP) bags, ROS-free: the messages of the controller as plain Rust with their CDR
//! encoding ([`msgs`]), `ros2msg` schemas from the installed `.msg` files ([`schema`]), a writer
//! ([`BagWriter`]) and a reader ([`Bag`]) of rosbag2 MCAP folders, and the deterministic replay
//! of a recorded flight through the controller core ([`replay`]).
//!
//! The ROS side (`trc record`, `trc play`, the node's `node.record_to`) moves serialized
//! messages between DDS and these types; `trc replay` needs no ROS 2 at all. The format and
//! the replay are described in `docs/rosbags.md`.

pub mod msgs;
pub mod reader;
pub mod replay;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use reader::{same_topic, Bag, BagMessage, TopicInfo};
pub use writer::BagWriter;

/// What went wrong with a bag.
#[derive(Debug, Error)]
pub enum BagError {
    /// A file system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The output folder exists (as `ros2 bag record -o`, a recorder never overwrites).
    #[error("{0}: exists; choose another output folder or remove it")]
    Exists(PathBuf),
    /// Not an MCAP file or bag folder.
    #[error("{path}: not a rosbag2 MCAP bag: {what}")]
    NotABag {
        /// The path given.
        path: PathBuf,
        /// Why.
        what: String,
    },
    /// A record that does not parse.
    #[error("{path}: malformed record at byte offset {offset}: {what}")]
    Malformed {
        /// The MCAP file.
        path: PathBuf,
        /// Offset of the top-level record (the chunk, for a message inside one).
        offset: u64,
        /// The parser's message.
        what: String,
    },
    /// The file ends inside a record or has no footer (a recorder killed before closing it).
    #[error("{path}: truncated at byte offset {offset} ({read} messages before it); the recorder did not close the file")]
    Truncated {
        /// The MCAP file.
        path: PathBuf,
        /// Where the incomplete record starts.
        offset: u64,
        /// Messages read before it.
        read: usize,
    },
    /// A message's CDR does not decode as its type.
    #[error("cannot decode a {type_name}: {what}")]
    Decode {
        /// The ROS 2 type.
        type_name: String,
        /// Why.
        what: String,
    },
    /// A message cannot be encoded.
    #[error("cannot encode a {type_name}: {what}")]
    Encode {
        /// The ROS 2 type.
        type_name: String,
        /// Why.
        what: String,
    },
    /// No schema for a type.
    #[error("no ros2msg schema for {type_name}: {what}")]
    Schema {
        /// The ROS 2 type.
        type_name: String,
        /// Why.
        what: String,
    },
    /// A write to a topic that was not declared with [`BagWriter::add_topic`].
    #[error("topic {0} was not added to the bag")]
    UnknownTopic(String),
}

impl BagError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BagError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn mcap(path: &Path, offset: u64, e: mcap::McapError) -> Self {
        match e {
            mcap::McapError::UnexpectedEof | mcap::McapError::UnexpectedEoc => {
                BagError::Malformed { path: path.to_path_buf(), offset, what: format!("{e} (truncated?)") }
            }
            mcap::McapError::Io(source) => BagError::Io { path: path.to_path_buf(), source },
            e => BagError::Malformed { path: path.to_path_buf(), offset, what: e.to_string() },
        }
    }
}

/// Reliability of a topic's QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// Reliable.
    Reliable,
    /// Best effort (sensor data).
    BestEffort,
}

/// The QoS a topic is recorded with and played back with (the parts that decide whether a
/// publisher and a subscriber match: reliability, durability; and the history depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// Reliability.
    pub reliability: Reliability,
    /// Transient local (latched) instead of volatile.
    pub transient_local: bool,
    /// Keep-last depth.
    pub depth: u32,
}

impl Default for Qos {
    fn default() -> Self {
        Qos { reliability: Reliability::Reliable, transient_local: false, depth: 10 }
    }
}

impl Qos {
    /// The QoS the controller's nodes use on `topic` (trc_node, trc_sim; `docs/architecture.md`):
    /// `state`, `odom`, `mass` best effort keep last 1; `goal` and `landing` transient local;
    /// the rest reliable, volatile.
    pub fn of_topic(topic: &str) -> Self {
        match topic.trim_start_matches('/') {
            "state" | "odom" | "mass" => Qos { reliability: Reliability::BestEffort, transient_local: false, depth: 1 },
            "goal" => Qos { reliability: Reliability::Reliable, transient_local: true, depth: 1 },
            "landing" => Qos { reliability: Reliability::Reliable, transient_local: true, depth: 10 },
            "clock" => Qos { reliability: Reliability::BestEffort, transient_local: false, depth: 1 },
            _ => Qos::default(),
        }
    }

    /// Reads the first profile of a recorded `offered_qos_profiles` YAML (strings or rosbag2's
    /// numeric enums); `None` when it is empty or unreadable.
    pub fn from_yaml(text: &str) -> Option<Self> {
        let v: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
        let p = v.as_sequence()?.first()?;
        let reliability = match &p["reliability"] {
            serde_yaml::Value::String(s) if s == "best_effort" => Reliability::BestEffort,
            serde_yaml::Value::Number(n) if n.as_u64() == Some(2) => Reliability::BestEffort,
            _ => Reliability::Reliable,
        };
        let transient_local = match &p["durability"] {
            serde_yaml::Value::String(s) => s == "transient_local",
            serde_yaml::Value::Number(n) => n.as_u64() == Some(1),
            _ => false,
        };
        let depth = p["depth"].as_u64().filter(|d| *d > 0).unwrap_or(10) as u32;
        Some(Qos { reliability, transient_local, depth })
    }

    /// Profile items at `indent` (rosbag2's metadata.yaml list form).
    pub fn to_yaml_items(&self, indent: &str) -> String {
        let rel = match self.reliability {
            Reliability::Reliable => "reliable",
            Reliability::BestEffort => "best_effort",
        };
        let dur = if self.transient_local { "transient_local" } else { "volatile" };
        let inf = "{sec: 9223372036, nsec: 854775807}"; // rclcpp's infinite duration, as Jazzy writes it
        format!(
            "{indent}- history: keep_last\n{indent}  depth: {}\n{indent}  reliability: {rel}\n{indent}  durability: {dur}\n{indent}  deadline: {inf}\n{indent}  lifespan: {inf}\n{indent}  liveliness: automatic\n{indent}  liveliness_lease_duration: {inf}\n{indent}  avoid_ros_namespace_conventions: false\n",
            self.depth
        )
    }

    /// The profile as the YAML list string an MCAP channel's `offered_qos_profiles` holds.
    pub fn to_yaml_list(&self) -> String {
        self.to_yaml_items("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_round_trips_through_its_yaml() {
        for q in [Qos::of_topic("state"), Qos::of_topic("/goal"), Qos::of_topic("control_sequence")] {
            assert_eq!(Qos::from_yaml(&q.to_yaml_list()), Some(q));
        }
        let numeric = "- history: 3\n  depth: 0\n  reliability: 2\n  durability: 1\n";
        assert_eq!(Qos::from_yaml(numeric), Some(Qos { reliability: Reliability::BestEffort, transient_local: true, depth: 10 }));
        assert_eq!(Qos::from_yaml(""), None);
    }
}
