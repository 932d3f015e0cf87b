//! Writes a rosbag2 MCAP folder: `<dir>/<name>_0.mcap` (profile `ros2`, `ros2msg` schemas,
//! `cdr` messages, zstd-compressed chunks; the container is the `mcap` crate's) and
//! `<dir>/metadata.yaml` (rosbag2 bag-file information, version 9 as ROS 2 Jazzy writes it), so
//! `ros2 bag info/play`, Foxglove and PlotJuggler open the folder.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::schema::MsgPath;
use super::{BagError, Qos};

/// One topic of a bag being written.
#[derive(Debug)]
struct Topic {
    channel: u16,
    type_name: String,
    qos: Qos,
    count: u64,
}

/// A rosbag2 MCAP bag being written. Messages go in as serialized CDR with their log time
/// (ns since the epoch, ROS time; sim time when recorded under `use_sim_time`); [`BagWriter::finish`]
/// closes the MCAP file (summary, indexes) and writes `metadata.yaml`. A writer dropped without
/// `finish` still closes the MCAP file (the `mcap` writer finishes on drop) but leaves no
/// `metadata.yaml`; the reader then takes the folder's only `.mcap` file. A process killed
/// mid-write leaves a file without footer, which the reader refuses as truncated.
pub struct BagWriter {
    dir: PathBuf,
    file_name: String,
    mcap: mcap::Writer<BufWriter<std::fs::File>>,
    schemas: MsgPath,
    topics: BTreeMap<String, Topic>,
    first_ns: Option<u64>,
    last_ns: u64,
    sequence: u32,
}

impl std::fmt::Debug for BagWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BagWriter").field("dir", &self.dir).field("topics", &self.topics).finish()
    }
}

impl BagWriter {
    /// Creates the bag folder `dir` (it must not exist, as with `ros2 bag record -o`) and its
    /// MCAP file. `schemas` finds the `.msg` files of the recorded types.
    ///
    /// # Errors
    /// [`BagError::Exists`] if `dir` exists; [`BagError::Io`] if it cannot be created.
    pub fn create(dir: &Path, schemas: MsgPath) -> Result<Self, BagError> {
        if dir.exists() {
            return Err(BagError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|e| BagError::io(dir, e))?;
        let stem = dir.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "bag".into());
        let file_name = format!("{stem}_0.mcap");
        let path = dir.join(&file_name);
        let file = std::fs::File::create(&path).map_err(|e| BagError::io(&path, e))?;
        let opts = mcap::WriteOptions::new()
            .profile("ros2")
            .library(format!("trc_control {}", env!("CARGO_PKG_VERSION")))
            .compression(Some(mcap::Compression::Zstd))
            .chunk_size(Some(256 * 1024));
        let mcap = opts.create(BufWriter::new(file)).map_err(|e| BagError::mcap(&path, 0, e))?;
        Ok(BagWriter { dir: dir.to_path_buf(), file_name, mcap, schemas, topics: BTreeMap::new(), first_ns: None, last_ns: 0, sequence: 0 })
    }

    /// The MCAP file's path.
    pub fn mcap_path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// Declares `topic` of `type_name` (`pkg/msg/Type`) with the QoS its publisher offered; its
    /// schema is read from the installed `.msg` files. Declaring a topic again is a no-op.
    ///
    /// # Errors
    /// [`BagError::Schema`] if the type's `.msg` files cannot be found; [`BagError::Mcap`].
    pub fn add_topic(&mut self, topic: &str, type_name: &str, qos: Qos) -> Result<(), BagError> {
        if self.topics.contains_key(topic) {
            return Ok(());
        }
        let schema = self.schemas.schema(type_name)?;
        let path = self.mcap_path();
        let schema_id = self.mcap.add_schema(type_name, "ros2msg", schema.as_bytes()).map_err(|e| BagError::mcap(&path, 0, e))?;
        let meta = BTreeMap::from([("offered_qos_profiles".to_string(), qos.to_yaml_list())]);
        let channel = self.mcap.add_channel(schema_id, topic, "cdr", &meta).map_err(|e| BagError::mcap(&path, 0, e))?;
        self.topics.insert(topic.to_string(), Topic { channel, type_name: type_name.to_string(), qos, count: 0 });
        Ok(())
    }

    /// Writes one serialized message of a declared topic at `log_time_ns`.
    ///
    /// # Errors
    /// [`BagError::UnknownTopic`] for a topic not declared; [`BagError::Mcap`] on a write error.
    pub fn write(&mut self, topic: &str, log_time_ns: u64, data: &[u8]) -> Result<(), BagError> {
        let path = self.mcap_path();
        let t = self.topics.get_mut(topic).ok_or_else(|| BagError::UnknownTopic(topic.to_string()))?;
        self.sequence = self.sequence.wrapping_add(1);
        let header = mcap::records::MessageHeader { channel_id: t.channel, sequence: self.sequence, log_time: log_time_ns, publish_time: log_time_ns };
        self.mcap.write_to_known_channel(&header, data).map_err(|e| BagError::mcap(&path, 0, e))?;
        t.count += 1;
        self.first_ns = Some(self.first_ns.map_or(log_time_ns, |f| f.min(log_time_ns)));
        self.last_ns = self.last_ns.max(log_time_ns);
        Ok(())
    }

    /// Encodes `msg` as CDR and writes it (see [`BagWriter::write`]).
    ///
    /// # Errors
    /// As [`BagWriter::write`], and [`BagError::Encode`].
    pub fn write_msg<T: serde::Serialize>(&mut self, topic: &str, log_time_ns: u64, msg: &T) -> Result<(), BagError> {
        let type_name = self.topics.get(topic).map(|t| t.type_name.clone()).ok_or_else(|| BagError::UnknownTopic(topic.to_string()))?;
        let data = super::msgs::to_cdr(&type_name, msg)?;
        self.write(topic, log_time_ns, &data)
    }

    /// Messages written per topic.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.topics.iter().map(|(k, t)| (k.clone(), t.count)).collect()
    }

    /// Closes the MCAP file and writes `metadata.yaml`; returns the folder.
    ///
    /// # Errors
    /// [`BagError::Mcap`] / [`BagError::Io`].
    pub fn finish(mut self) -> Result<PathBuf, BagError> {
        let path = self.mcap_path();
        self.mcap.finish().map_err(|e| BagError::mcap(&path, 0, e))?;
        let meta = self.metadata_yaml();
        let mpath = self.dir.join("metadata.yaml");
        std::fs::write(&mpath, meta).map_err(|e| BagError::io(&mpath, e))?;
        Ok(self.dir.clone())
    }

    fn metadata_yaml(&self) -> String {
        let start = self.first_ns.unwrap_or(0);
        let duration = self.last_ns.saturating_sub(start);
        let total: u64 = self.topics.values().map(|t| t.count).sum();
        let mut y = String::from("rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: mcap\n");
        y += &format!("  duration:\n    nanoseconds: {duration}\n  starting_time:\n    nanoseconds_since_epoch: {start}\n  message_count: {total}\n");
        y += "  topics_with_message_count:\n";
        for (name, t) in &self.topics {
            y += &format!(
                "    - topic_metadata:\n        name: \"{name}\"\n        type: {}\n        serialization_format: cdr\n        offered_qos_profiles:\n{}        type_description_hash: \"\"\n      message_count: {}\n",
                t.type_name,
                t.qos.to_yaml_items("          "),
                t.count
            );
        }
        y += "  compression_format: \"\"\n  compression_mode: \"\"\n";
        y += &format!("  relative_file_paths:\n    - \"{}\"\n", self.file_name);
        y += &format!(
            "  files:\n    - path: \"{}\"\n      starting_time:\n        nanoseconds_since_epoch: {start}\n      duration:\n        nanoseconds: {duration}\n      message_count: {total}\n",
            self.file_name
        );
        y += "  custom_data: ~\n  ros_distro: jazzy\n";
        y
    }
}
