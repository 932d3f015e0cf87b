//! Datasets of optimal demonstrations: sampling initial states, generating solutions in parallel,
//! and the safetensors file format.
//!
//! A dataset file (`.safetensors`) holds, for B samples of a problem with state dim n, control dim
//! m and horizon N (all f64 unless stated):
//!
//! | tensor | shape | meaning |
//! |---|---|---|
//! | `index` | `[B]` i64 | sample index within the (seed, split) stream |
//! | `x0` | `[B, n]` | initial state |
//! | `x_target` | `[B, n]` | target state |
//! | `t_go` | `[B]` | time-to-go / optimal t_f [s] |
//! | `u` | `[B, N, m]` | optimal controls u* |
//! | `x` | `[B, N+1, n]` | states re-simulated through the RK4 dynamics under u* |
//! | `x_model` | `[B, N+1, n]` | the solver's own predicted states (its discretisation) |
//! | `cost` | `[B]` | optimal cost J* |
//! | `iterations` | `[B]` i64 | solver iterations |
//!
//! plus one metadata entry `trc` holding a YAML document ([`DatasetMeta`]: problem config, seed,
//! split, counts, version). Everything in the file is a deterministic function of (problem config,
//! seed, split, index range), so the same command gives a byte-identical file; solve times, which
//! are not deterministic, go to a sidecar report (`<file>.report.yaml`).

mod generate;
mod mid_flight;
mod sampling;

pub use generate::{generate, GenerateOptions, GenerateReport};
pub use mid_flight::{label_states, mid_flight, S_MAX as MID_FLIGHT_S_MAX};
pub use sampling::{sample_instance, sample_rng, Split};

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::ProblemConfig;

/// Dataset format version written into the metadata.
pub const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing datasets.
#[derive(Debug, Error)]
pub enum DataError {
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a dataset this version understands.
    #[error("{path}: not a trc_control dataset ({reason}); regenerate it with `trc gen-data`")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Files that cannot be merged.
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// Metadata stored in every dataset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// trc_control crate version that wrote it.
    pub crate_version: String,
    /// The problem, with every parameter.
    pub problem: ProblemConfig,
    /// Base seed.
    pub seed: u64,
    /// Split (train / val / test; disjoint sample streams).
    pub split: Split,
    /// First sample index covered (inclusive).
    pub index_start: u64,
    /// Last sample index covered (exclusive).
    pub index_end: u64,
    /// Samples dropped (infeasible or not converged), by index.
    pub dropped: Vec<u64>,
}

/// A dataset in memory (row-major flat arrays; shapes in the module table).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Metadata.
    pub meta: DatasetMeta,
    /// State dimension n.
    pub n: usize,
    /// Control dimension m.
    pub m: usize,
    /// Horizon N.
    pub horizon: usize,
    /// Sample indices `[B]`.
    pub index: Vec<i64>,
    /// `[B, n]`.
    pub x0: Vec<f64>,
    /// `[B, n]`.
    pub x_target: Vec<f64>,
    /// `[B]`.
    pub t_go: Vec<f64>,
    /// `[B, N, m]`.
    pub u: Vec<f64>,
    /// `[B, N+1, n]`.
    pub x: Vec<f64>,
    /// `[B, N+1, n]`.
    pub x_model: Vec<f64>,
    /// `[B]`.
    pub cost: Vec<f64>,
    /// `[B]`.
    pub iterations: Vec<i64>,
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Dataset {
    /// A dataset with this one's metadata and dimensions and no samples (nothing dropped).
    pub fn empty_like(&self) -> Dataset {
        let mut meta = self.meta.clone();
        meta.dropped.clear();
        Dataset {
            meta,
            n: self.n,
            m: self.m,
            horizon: self.horizon,
            index: vec![],
            x0: vec![],
            x_target: vec![],
            t_go: vec![],
            u: vec![],
            x: vec![],
            x_model: vec![],
            cost: vec![],
            iterations: vec![],
        }
    }

    /// Appends one solved sample: its index, the instance and the solver's solution
    /// (`u` `[N, m]`, `x` / `x_model` `[N+1, n]` stored row-major).
    pub fn push_solution(&mut self, index: i64, inst: &crate::solvers::Instance, sol: &crate::solvers::Solution) {
        let row_major = |mat: &nalgebra::DMatrix<f64>| mat.transpose().as_slice().to_vec();
        self.index.push(index);
        self.x0.extend(inst.x0.iter());
        self.x_target.extend(inst.x_target.iter());
        self.t_go.push(sol.t_go);
        self.u.extend(row_major(&sol.u));
        self.x.extend(row_major(&sol.x));
        self.x_model.extend(row_major(&sol.x_model));
        self.cost.push(sol.cost);
        self.iterations.push(sol.iterations as i64);
    }

    /// Appends every sample of `other` (the caller checks that problem and dimensions agree).
    fn append_samples(&mut self, other: Dataset) {
        self.index.extend(other.index);
        self.x0.extend(other.x0);
        self.x_target.extend(other.x_target);
        self.t_go.extend(other.t_go);
        self.u.extend(other.u);
        self.x.extend(other.x);
        self.x_model.extend(other.x_model);
        self.cost.extend(other.cost);
        self.iterations.extend(other.iterations);
    }

    /// Number of samples B.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when B = 0.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Writes the dataset as safetensors.
    ///
    /// # Errors
    /// [`DataError::Io`] if the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), DataError> {
        let path = path.as_ref();
        let b = self.len();
        let (n, m, nn) = (self.n, self.m, self.horizon);
        let buffers: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("index", Dtype::I64, vec![b], i64_bytes(&self.index)),
            ("x0", Dtype::F64, vec![b, n], f64_bytes(&self.x0)),
            ("x_target", Dtype::F64, vec![b, n], f64_bytes(&self.x_target)),
            ("t_go", Dtype::F64, vec![b], f64_bytes(&self.t_go)),
            ("u", Dtype::F64, vec![b, nn, m], f64_bytes(&self.u)),
            ("x", Dtype::F64, vec![b, nn + 1, n], f64_bytes(&self.x)),
            ("x_model", Dtype::F64, vec![b, nn + 1, n], f64_bytes(&self.x_model)),
            ("cost", Dtype::F64, vec![b], f64_bytes(&self.cost)),
            ("iterations", Dtype::I64, vec![b], i64_bytes(&self.iterations)),
        ];
        let views: Vec<(&str, TensorView<'_>)> = buffers
            .iter()
            .map(|(name, dt, shape, data)| (*name, TensorView::new(*dt, shape.clone(), data).expect("shape matches the data by construction")))
            .collect();
        let meta_yaml = serde_yaml::to_string(&self.meta).expect("metadata serialises");
        // one metadata key: safetensors writes a HashMap, whose order would vary between runs
        let meta = Some(HashMap::from([("trc".to_string(), meta_yaml)]));
        let bytes = safetensors::serialize(views, &meta)
            .map_err(|e| DataError::Io { path: path.display().to_string(), source: std::io::Error::other(e.to_string()) })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DataError::Io { path: dir.display().to_string(), source })?;
        }
        std::fs::write(path, bytes).map_err(|source| DataError::Io { path: path.display().to_string(), source })
    }

    /// Reads a dataset file.
    ///
    /// # Errors
    /// [`DataError::Io`] if unreadable, [`DataError::Format`] if it is not a dataset of this version.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let p = path.display().to_string();
        let fmt = |reason: String| DataError::Format { path: p.clone(), reason };
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: p.clone(), source })?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt(e.to_string()))?;
        let meta_yaml = header.metadata().as_ref().and_then(|m| m.get("trc")).ok_or_else(|| fmt("no `trc` metadata".into()))?;
        let meta: DatasetMeta = serde_yaml::from_str(meta_yaml).map_err(|e| fmt(format!("metadata: {e}")))?;
        if meta.version != FORMAT_VERSION {
            return Err(fmt(format!("format version {} (this build reads {FORMAT_VERSION})", meta.version)));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt(e.to_string()))?;
        let get = |name: &str, dt: Dtype| -> Result<(Vec<usize>, Vec<u8>), DataError> {
            let t = st.tensor(name).map_err(|e| fmt(format!("{name}: {e}")))?;
            if t.dtype() != dt {
                return Err(fmt(format!("{name}: dtype {:?}, expected {dt:?}", t.dtype())));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let f64s = |name: &str| -> Result<(Vec<usize>, Vec<f64>), DataError> {
            let (s, d) = get(name, Dtype::F64)?;
            Ok((s, d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()))
        };
        let i64s = |name: &str| -> Result<Vec<i64>, DataError> {
            let (_, d) = get(name, Dtype::I64)?;
            Ok(d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
        };
        let (xs, x0) = f64s("x0")?;
        let (us, u) = f64s("u")?;
        if xs.len() != 2 || us.len() != 3 || us[0] != xs[0] {
            return Err(fmt(format!("x0 shape {xs:?}, u shape {us:?}")));
        }
        let (b, n, m, nn) = (xs[0], xs[1], us[2], us[1]);
        let problem = meta.problem.build().map_err(|e| fmt(format!("problem in metadata: {e}")))?;
        if (problem.state_dim(), problem.control_dim(), problem.horizon()) != (n, m, nn) {
            return Err(fmt(format!(
                "arrays have (n, m, N) = {:?}, the problem in the metadata {:?}",
                (n, m, nn),
                (problem.state_dim(), problem.control_dim(), problem.horizon())
            )));
        }
        let check = |name: &str, (s, v): (Vec<usize>, Vec<f64>), want: Vec<usize>| -> Result<Vec<f64>, DataError> {
            if s == want {
                Ok(v)
            } else {
                Err(fmt(format!("{name}: shape {s:?}, expected {want:?}")))
            }
        };
        let index = i64s("index")?;
        let iterations = i64s("iterations")?;
        if index.len() != b || iterations.len() != b {
            return Err(fmt(format!("index/iterations have {}/{} rows, expected {b}", index.len(), iterations.len())));
        }
        Ok(Self {
            n,
            m,
            horizon: nn,
            index,
            x0,
            x_target: check("x_target", f64s("x_target")?, vec![b, n])?,
            t_go: check("t_go", f64s("t_go")?, vec![b])?,
            u,
            x: check("x", f64s("x")?, vec![b, nn + 1, n])?,
            x_model: check("x_model", f64s("x_model")?, vec![b, nn + 1, n])?,
            cost: check("cost", f64s("cost")?, vec![b])?,
            iterations,
            meta,
        })
    }

    /// Concatenates shards of one stream (same problem, seed and split, contiguous index ranges
    /// given in order) into the dataset the unsharded command would have written.
    ///
    /// # Errors
    /// [`DataError::Merge`] if the shards disagree or leave a gap.
    pub fn merge(shards: Vec<Dataset>) -> Result<Dataset, DataError> {
        let mut it = shards.into_iter();
        let mut out = it.next().ok_or_else(|| DataError::Merge("no shards given".into()))?;
        for s in it {
            let (a, b) = (&out.meta, &s.meta);
            if a.problem != b.problem || a.seed != b.seed || a.split != b.split || a.version != b.version {
                return Err(DataError::Merge("shards differ in problem, seed, split or version".into()));
            }
            if b.index_start != a.index_end {
                return Err(DataError::Merge(format!("shard starting at index {} does not follow the previous one ending at {}", b.index_start, a.index_end)));
            }
            out.meta.index_end = b.index_end;
            out.meta.dropped.extend(&b.dropped);
            out.append_samples(s);
        }
        Ok(out)
    }
}
