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
    /// The (first) MCAP file read.
    pub path: PathBuf,
    /// Messages in file order (the order they were written: log time for a recorder).
    pub messages: Vec<BagMessage>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

/// The MCAP files of a bag path: `path` itself if it is a file, else the `relative_file_paths`
/// of `path/metadata.yaml` (a bag split into several files is read whole, in that order), else
/// the only `*.mcap` in the folder.
///
/// # Errors
/// [`BagError::Io`] / [`BagError::NotABag`].
pub fn mcap_files(path: &Path) -> Result<Vec<PathBuf>, BagError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
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
        let files: Vec<PathBuf> = info["relative_file_paths"].as_sequence().into_iter().flatten().filter_map(|f| f.as_str()).map(|f| path.join(f)).collect();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| BagError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mcap"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found),
        0 => Err(BagError::NotABag { path: path.to_path_buf(), what: "no metadata.yaml and no .mcap file in the folder".into() }),
        n => Err(BagError::NotABag { path: path.to_path_buf(), what: format!("{n} .mcap files and no metadata.yaml naming them; pass one file") }),
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
        let mut bag: Option<Bag> = None;
        for file in mcap_files(path)? {
            let buf = std::fs::read(&file).map_err(|e| BagError::io(&file, e))?;
            let part = Self::parse(&file, &buf)?;
            match bag.as_mut() {
                None => bag = Some(part),
                Some(b) => {
                    b.messages.extend(part.messages);
                    for (t, info) in part.topics {
                        b.topics.entry(t).and_modify(|i| i.count += info.count).or_insert(info);
                    }
                }
            }
        }
        bag.ok_or_else(|| BagError::NotABag { path: path.to_path_buf(), what: "no MCAP file".into() })
    }

    fn parse(path: &Path, buf: &[u8]) -> Result<Self, BagError> {
        let magic = mcap::MAGIC;
        if buf.len() < magic.len() || &buf[..magic.len()] != magic {
            return Err(BagError::NotABag { path: path.to_path_buf(), what: "no MCAP magic at offset 0 (not an MCAP file)".into() });
        }
        let mut st = State::default();
        let mut off = magic.len();
        loop {
            if buf.len() - off == magic.len() && &buf[off..] == magic {
                break;
            }
            let Some((op, body, next)) = frame(buf, off) else {
                // the file ends inside a record, or without footer and end magic: a recorder
                // killed before closing the file
                return Err(BagError::Truncated { path: path.to_path_buf(), offset: off as u64, read: st.messages.len() });
            };
            match op {
                mcap::records::op::CHUNK => {
                    let inner = chunk_records(path, off as u64, body, buf.len())?;
                    let mut ioff = 0;
                    while ioff < inner.len() {
                        let (iop, ibody, inext) = frame(&inner, ioff).ok_or_else(|| BagError::Malformed {
                            path: path.to_path_buf(),
                            offset: off as u64,
                            what: format!("a record inside the chunk at its byte {ioff} runs past the chunk's end"),
                        })?;
                        st.take(path, off as u64, iop, ibody)?;
                        ioff = inext;
                    }
                }
                mcap::records::op::FOOTER => {
                    if buf.len() < next + magic.len() || &buf[next..next + magic.len()] != magic {
                        return Err(BagError::Truncated { path: path.to_path_buf(), offset: next as u64, read: st.messages.len() });
                    }
                    break;
                }
                _ => st.take(path, off as u64, op, body)?,
            }
            off = next;
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

/// The record at `off`: `(opcode, body, offset of the next record)`, or `None` when the buffer
/// ends inside it (MCAP specification, "Records": opcode `u8`, length `u64` LE, body).
fn frame(buf: &[u8], off: usize) -> Option<(u8, &[u8], usize)> {
    let head = buf.get(off..off.checked_add(9)?)?;
    let len = usize::try_from(u64::from_le_bytes(head[1..9].try_into().ok()?)).ok()?;
    let end = (off + 9).checked_add(len)?;
    Some((head[0], buf.get(off + 9..end)?, end))
}

/// The records of a chunk, decompressed (zstd or none) with the chunk's own uncompressed size as
/// the cap, and its CRC checked; a size beyond 1 GiB or 1,000 times the file is refused before
/// anything is allocated.
fn chunk_records(path: &Path, offset: u64, body: &[u8], file_len: usize) -> Result<Vec<u8>, BagError> {
    let bad = |what: String| BagError::Malformed { path: path.to_path_buf(), offset, what };
    let rec = mcap::read::parse_record(mcap::records::op::CHUNK, body).map_err(|e| bad(format!("chunk header: {e}")))?;
    let mcap::records::Record::Chunk { header, data } = rec else { return Err(bad("not a chunk".into())) };
    let size = usize::try_from(header.uncompressed_size).map_err(|_| bad("uncompressed size overflows".into()))?;
    let cap = (1usize << 30).min(file_len.saturating_mul(1000).max(1 << 20));
    if size > cap {
        return Err(bad(format!("chunk claims {size} bytes uncompressed (more than {cap})")));
    }
    let out = match header.compression.as_str() {
        "" => data.into_owned(),
        "zstd" => zstd::bulk::decompress(&data, size).map_err(|e| bad(format!("zstd: {e}")))?,
        other => return Err(bad(format!("chunk compression `{other}` is not supported (zstd or none); recompress with `mcap convert`"))),
    };
    if out.len() != size {
        return Err(bad(format!("chunk decompressed to {} bytes, its header says {size}", out.len())));
    }
    if header.uncompressed_crc != 0 && crc32fast::hash(&out) != header.uncompressed_crc {
        return Err(bad(format!("chunk CRC failed (expected {:08X})", header.uncompressed_crc)));
    }
    Ok(out)
}

#[derive(Default)]
struct State {
    schemas: HashMap<u16, String>,
    channels: HashMap<u16, (String, String)>,
    messages: Vec<BagMessage>,
    topics: BTreeMap<String, TopicInfo>,
}

impl State {
    /// Takes a Schema, Channel or Message record; every other record (indexes, statistics,
    /// attachments, metadata) is skipped unparsed.
    fn take(&mut self, path: &Path, offset: u64, op: u8, body: &[u8]) -> Result<(), BagError> {
        use mcap::records::op;
        if ![op::SCHEMA, op::CHANNEL, op::MESSAGE].contains(&op) {
            return Ok(());
        }
        let r = mcap::read::parse_record(op, body).map_err(|e| BagError::mcap(path, offset, e))?;
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
