//! Reads a rosbag2 MCAP bag (a folder with `metadata.yaml`, or one `.mcap` file) into memory:
//! every message with its topic, type and log time, in file order. Parsing, chunk decompression
//! and CRC checks are the `mcap` crate's; this module walks the top-level record framing
//! (opcode `u8`, length `u64` LE, body; MCAP specification, "Records") only to say at which byte
//! offset a malformed or truncated file goes wrong.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mcap::records::Record;

use super::BagError;

/// One message of a bag.
#[derive(Debug, Clone)]
pub struct BagMessage {
    /// Topic name as recorded (e.g. `/state`).
    pub topic: String,
    /// ROS 2 type (`pkg/msg/Type`), from the channel's schema.
    pub type_name: String,
    /// Log time [ns since the epoch] (the recorder's receive time).
    pub log_time_ns: u64,
    /// Serialized message (CDR with its encapsulation header).
    pub data: Vec<u8>,
}

/// A topic of a bag.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    /// ROS 2 type.
    pub type_name: String,
    /// Message encoding (`cdr` for ROS 2).
    pub encoding: String,
    /// The `offered_qos_profiles` YAML of the channel (may be empty).
    pub qos_yaml: String,
    /// Messages on it.
    pub count: u64,
}

/// A bag read into memory.
#[derive(Debug, Clone)]
pub struct Bag {
    /// The MCAP file read.
    pub path: PathBuf,
    /// Messages in file order (the order they were written: log time for a recorder).
    pub messages: Vec<BagMessage>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

/// The MCAP file of a bag path: `path` itself if it is a file, else the first
/// `relative_file_paths` entry of `path/metadata.yaml`, else the only `*.mcap` in the folder.
///
/// # Errors
/// [`BagError::Io`] / [`BagError::NotABag`].
pub fn mcap_file(path: &Path) -> Result<PathBuf, BagError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(BagError::NotABag { path: path.to_path_buf(), what: "no such file or folder".into() });
    }
    let meta = path.join("metadata.yaml");
    if let Ok(text) = std::fs::read_to_string(&meta) {
        let v: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| BagError::NotABag { path: meta.clone(), what: format!("metadata.yaml is not YAML: {e}") })?;
        let info = &v["rosbag2_bagfile_information"];
        if let Some(storage) = info["storage_identifier"].as_str() {
            if storage != "mcap" {
                return Err(BagError::NotABag { path: meta, what: format!("storage `{storage}` (only mcap is read; convert with `ros2 bag convert`)") });
            }
        }
        if let Some(first) = info["relative_file_paths"].as_sequence().and_then(|s| s.first()).and_then(|f| f.as_str()) {
            return Ok(path.join(first));
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| BagError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mcap"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BagError::NotABag { path: path.to_path_buf(), what: "no metadata.yaml and no .mcap file in the folder".into() }),
        n => Err(BagError::NotABag { path: path.to_path_buf(), what: format!("{n} .mcap files and no metadata.yaml naming one; pass the file") }),
    }
}

impl Bag {
    /// Reads the bag at `path` (folder or `.mcap` file).
    ///
    /// # Errors
    /// [`BagError::NotABag`] (no MCAP magic, not a bag folder), [`BagError::Malformed`] (a record
    /// that does not parse, a bad chunk CRC, a message on an undeclared channel) and
    /// [`BagError::Truncated`] (the file ends inside a record), each naming the file and the
    /// byte offset of the record.
    pub fn open(path: &Path) -> Result<Self, BagError> {
        let path = mcap_file(path)?;
        let buf = std::fs::read(&path).map_err(|e| BagError::io(&path, e))?;
        Self::parse(&path, &buf)
    }

    fn parse(path: &Path, buf: &[u8]) -> Result<Self, BagError> {
        let magic = mcap::MAGIC;
        if buf.len() < magic.len() || &buf[..magic.len()] != magic {
            return Err(BagError::NotABag { path: path.to_path_buf(), what: "no MCAP magic at offset 0 (not an MCAP file)".into() });
        }
        let mut st = State::default();
        let mut off = magic.len();
        loop {
            if off == buf.len() {
                // no footer and no end magic: a recorder killed before closing the file
                return Err(BagError::Truncated { path: path.to_path_buf(), offset: off as u64, read: st.messages.len() });
            }
            if buf.len() - off == magic.len() && &buf[off..] == magic {
                break;
            }
            if buf.len() - off < 9 {
                return Err(BagError::Truncated { path: path.to_path_buf(), offset: off as u64, read: st.messages.len() });
            }
            let op = buf[off];
            let len = u64::from_le_bytes(buf[off + 1..off + 9].try_into().expect("8 bytes"));
            let body_start = off + 9;
            if len > (buf.len() - body_start) as u64 {
                return Err(BagError::Truncated { path: path.to_path_buf(), offset: off as u64, read: st.messages.len() });
            }
            let body = &buf[body_start..body_start + len as usize];
            let rec = mcap::read::parse_record(op, body).map_err(|e| BagError::mcap(path, off as u64, e))?;
            match rec {
                Record::Chunk { header, data } => {
                    let reader = mcap::read::ChunkReader::new(header, &data).map_err(|e| BagError::mcap(path, off as u64, e))?;
                    for r in reader {
                        let r = r.map_err(|e| BagError::mcap(path, off as u64, e))?;
                        st.take(r, path, off as u64)?;
                    }
                }
                Record::Footer(_) => {
                    let end = body_start + len as usize;
                    if buf.len() < end + magic.len() || &buf[end..end + magic.len()] != magic {
                        return Err(BagError::Truncated { path: path.to_path_buf(), offset: end as u64, read: st.messages.len() });
                    }
                    break;
                }
                r => st.take(r, path, off as u64)?,
            }
            off = body_start + len as usize;
        }
        Ok(Bag { path: path.to_path_buf(), messages: st.messages, topics: st.topics })
    }

    /// Messages on `topic` (names compare with or without the leading `/`).
    pub fn on<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a BagMessage> + 'a {
        self.messages.iter().filter(move |m| same_topic(&m.topic, topic))
    }

    /// Log time span [ns]: first and last message.
    pub fn span_ns(&self) -> Option<(u64, u64)> {
        let first = self.messages.iter().map(|m| m.log_time_ns).min()?;
        let last = self.messages.iter().map(|m| m.log_time_ns).max()?;
        Some((first, last))
    }
}

/// Topic names compare without their leading `/` (`state` is `/state` in the root namespace).
pub fn same_topic(a: &str, b: &str) -> bool {
    a.trim_start_matches('/') == b.trim_start_matches('/')
}

#[derive(Default)]
struct State {
    schemas: HashMap<u16, String>,
    channels: HashMap<u16, (String, String)>,
    messages: Vec<BagMessage>,
    topics: BTreeMap<String, TopicInfo>,
}

impl State {
    fn take(&mut self, r: Record<'_>, path: &Path, offset: u64) -> Result<(), BagError> {
        match r {
            Record::Schema { header, .. } => {
                self.schemas.insert(header.id, header.name);
            }
            Record::Channel(c) => {
                let type_name = self.schemas.get(&c.schema_id).cloned().unwrap_or_default();
                let qos_yaml = c.metadata.get("offered_qos_profiles").cloned().unwrap_or_default();
                self.topics.entry(c.topic.clone()).or_insert(TopicInfo {
                    type_name: type_name.clone(),
                    encoding: c.message_encoding.clone(),
                    qos_yaml,
                    count: 0,
                });
                self.channels.insert(c.id, (c.topic, type_name));
            }
            Record::Message { header, data } => {
                let Some((topic, type_name)) = self.channels.get(&header.channel_id).cloned() else {
                    return Err(BagError::Malformed {
                        path: path.to_path_buf(),
                        offset,
                        what: format!("message on channel {} which no Channel record declares", header.channel_id),
                    });
                };
                if let Some(t) = self.topics.get_mut(&topic) {
                    t.count += 1;
                }
                self.messages.push(BagMessage { topic, type_name, log_time_ns: header.log_time, data: data.into_owned() });
            }
            _ => {}
        }
        Ok(())
    }
}
