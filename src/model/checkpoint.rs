//! Checkpoints: `<name>.safetensors` (weights; keys are the variable paths) and
//! `<name>.yaml`, the model card: architecture, normalisation, problem config, how it was made
//! (command, seed, dataset hash, commit) and its metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device};
use thiserror::Error;

use super::{ModelConfig, Newton, Normalizer, Trc};
use crate::config::ProblemConfig;
use crate::error::ConfigError;

/// Model card format version.
pub const CARD_VERSION: u32 = 1;

/// How a checkpoint was produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The exact command line.
    pub command: String,
    /// Training seed.
    pub seed: u64,
    /// Training dataset file and its SHA-256.
    pub train_data: Vec<(String, String)>,
    /// Validation dataset file and its SHA-256.
    pub val_data: Vec<(String, String)>,
    /// Git commit of the code (`git rev-parse HEAD`, "+dirty" if modified), or "unknown".
    pub commit: String,
    /// Device trained on.
    pub device: String,
    /// Wall time of training [s].
    pub train_time_s: f64,
    /// Epochs run and the one kept (best validation loss).
    pub epochs: u64,
    /// Epoch of the kept weights.
    pub best_epoch: u64,
}

/// The YAML model card beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Card format version ([`CARD_VERSION`]).
    pub version: u32,
    /// The problem the model controls, with every parameter.
    pub problem: ProblemConfig,
    /// Architecture.
    pub model: ModelConfig,
    /// Normalisation statistics of the training data.
    pub normalizer: Normalizer,
    /// Trainable parameters.
    pub parameters: i64,
    /// Training settings, free-form (loss weights, optimiser, schedule).
    pub training: BTreeMap<String, String>,
    /// How it was made.
    pub provenance: Provenance,
    /// Metrics (name -> value), with the split they were measured on in the name.
    pub metrics: BTreeMap<String, f64>,
}

impl ModelCard {
    /// The card of a model no training produced (tests, latency benches of a preset with random
    /// weights): this version, the architecture, the normaliser and the parameter count of `vs`;
    /// no training settings, provenance or metrics.
    pub fn untrained(problem: ProblemConfig, model: ModelConfig, normalizer: Normalizer, vs: &nn::VarStore) -> Self {
        Self {
            version: CARD_VERSION,
            problem,
            model,
            normalizer,
            parameters: crate::model::trc::parameter_count(vs),
            training: BTreeMap::new(),
            provenance: Provenance::default(),
            metrics: BTreeMap::new(),
        }
    }
}

/// Errors loading or saving checkpoints.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// File I/O.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The card does not fit what the caller needs.
    #[error("model card {path} does not match: {reason}")]
    Mismatch {
        /// The card.
        path: String,
        /// What differs, and what to do.
        reason: String,
    },
    /// The card's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights or the normalizer are unusable (non-finite values, a forward pass that is
    /// not finite).
    #[error("checkpoint {path} is unusable: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

/// Paths of a checkpoint: `stem.safetensors` and `stem.yaml`.
pub fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    (sibling(stem, "safetensors"), sibling(stem, "yaml"))
}

/// The file `STEM.ext` of a checkpoint stem (`ext` without the leading dot, e.g. `train.csv`).
/// A stem given with its `.safetensors` or `.yaml` file name is accepted; any other dot in the
/// stem is kept (`models/run_0.5` -> `models/run_0.5.yaml`, not `models/run_0.yaml`).
pub fn sibling(stem: &Path, ext: &str) -> PathBuf {
    let base = match stem.extension().and_then(|e| e.to_str()) {
        Some("safetensors" | "yaml") => stem.with_extension(""),
        _ => stem.to_path_buf(),
    };
    let mut name = base.into_os_string();
    name.push(".");
    name.push(ext);
    name.into()
}

/// Saves weights and card for the checkpoint `stem`.
///
/// # Errors
/// [`CheckpointError::Io`] if either file cannot be written.
pub fn save(stem: &Path, vs: &nn::VarStore, card: &ModelCard) -> Result<(), CheckpointError> {
    let (w, c) = paths(stem);
    if let Some(d) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| CheckpointError::Io { path: d.display().to_string(), message: e.to_string() })?;
    }
    vs.save(&w).map_err(|e| CheckpointError::Io { path: w.display().to_string(), message: e.to_string() })?;
    let text = serde_yaml::to_string(card).map_err(|e| CheckpointError::Io { path: c.display().to_string(), message: e.to_string() })?;
    std::fs::write(&c, format!("# trc_control model card (written by trc train; do not edit the weights' card by hand)\n{text}"))
        .map_err(|e| CheckpointError::Io { path: c.display().to_string(), message: e.to_string() })
}

/// Reads a model card.
///
/// # Errors
/// [`CheckpointError::Io`] if unreadable or malformed.
pub fn read_card(stem: &Path) -> Result<ModelCard, CheckpointError> {
    let (_, c) = paths(stem);
    let text = std::fs::read_to_string(&c).map_err(|e| CheckpointError::Io { path: c.display().to_string(), message: e.to_string() })?;
    let card: ModelCard =
        serde_yaml::from_str(&text).map_err(|e| CheckpointError::Io { path: c.display().to_string(), message: format!("malformed model card: {e}") })?;
    if card.version != CARD_VERSION {
        return Err(CheckpointError::Mismatch {
            path: c.display().to_string(),
            reason: format!("card version {} (this build reads {CARD_VERSION}); retrain or use a matching build", card.version),
        });
    }
    Ok(card)
}

/// Loads a checkpoint onto `device`. With `expect`, refuses a card whose problem (kind,
/// dimensions, or any parameter) differs from the one the caller runs.
///
/// # Errors
/// [`CheckpointError::Mismatch`] naming what differs; [`CheckpointError::Io`] for unreadable files.
pub fn load(stem: &Path, device: Device, expect: Option<&ProblemConfig>) -> Result<(nn::VarStore, Trc, ModelCard), CheckpointError> {
    load_as(stem, device, expect, RunAs::default())
}

/// What [`load_as`] changes in a checkpoint's architecture: inference-time ablations that keep
/// the weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunAs {
    /// Another use of the sensitivity features than the one trained ([`Newton`]).
    pub newton: Option<Newton>,
    /// Monotone acceptance on or off ([`crate::model::ModelConfig::accept`]).
    pub accept: Option<bool>,
    /// Joint monotone acceptance on or off ([`crate::model::ModelConfig::joint_monotone`]).
    pub joint_monotone: Option<bool>,
}

/// [`load`], run as `run_as` says: another use of the sensitivity features than the one trained
/// (e.g. an `input` model with the Gauss-Newton corrector in its loop, `corrected`; the weights
/// of `input`, `step` and `corrected` have the same shapes), or the monotone acceptance.
///
/// # Errors
/// As [`load`]; [`CheckpointError::Mismatch`] when `newton` needs weights the checkpoint does not
/// have (`off` and the feature modes differ in the encoder and decoder widths).
pub fn load_as(stem: &Path, device: Device, expect: Option<&ProblemConfig>, run_as: RunAs) -> Result<(nn::VarStore, Trc, ModelCard), CheckpointError> {
    let mut card = read_card(stem)?;
    if let Some(a) = run_as.accept {
        card.model.accept = a;
    }
    if let Some(j) = run_as.joint_monotone {
        card.model.joint_monotone = j;
    }
    if let Some(nw) = run_as.newton {
        if (nw == Newton::Off) != (card.model.newton == Newton::Off) {
            return Err(CheckpointError::Mismatch {
                path: paths(stem).1.display().to_string(),
                reason: format!("trained with newton = {:?}, which has other weight shapes than {nw:?}", card.model.newton),
            });
        }
        card.model.newton = nw;
    }
    let (w, c) = paths(stem);
    let cpath = c.display().to_string();
    if let Some(want) = expect {
        if want.name != card.problem.name {
            return Err(CheckpointError::Mismatch {
                path: cpath,
                reason: format!("the model is for `{}`, the configuration runs `{}`; pass the {} model", card.problem.name, want.name, want.name),
            });
        }
        let (a, b) = (want.build()?, card.problem.build()?);
        if (a.state_dim(), a.control_dim(), a.horizon()) != (b.state_dim(), b.control_dim(), b.horizon()) {
            return Err(CheckpointError::Mismatch {
                path: cpath,
                reason: format!(
                    "dimensions (n, m, N) = {:?} in the card vs {:?} configured",
                    (b.state_dim(), b.control_dim(), b.horizon()),
                    (a.state_dim(), a.control_dim(), a.horizon())
                ),
            });
        }
        if *want != card.problem {
            return Err(CheckpointError::Mismatch {
                path: cpath,
                reason:
                    "problem parameters differ from the configuration (the model was trained for other constants); retrain or use the card's problem section"
                        .into(),
            });
        }
    }
    let nm = &card.normalizer;
    let stats = [&nm.x_mean, &nm.x_std, &nm.u_mean, &nm.u_std].into_iter().flatten().chain([&nm.t_mean, &nm.t_std]);
    let stds = nm.x_std.iter().chain(&nm.u_std).chain([&nm.t_std]);
    if stats.into_iter().any(|v| !v.is_finite()) || stds.into_iter().any(|v| *v <= 0.0) {
        return Err(CheckpointError::Corrupt {
            path: cpath,
            reason: "the normalizer holds a non-finite value or a standard deviation <= 0 (a card edited by hand or truncated); restore it or retrain".into(),
        });
    }
    let mut vs = nn::VarStore::new(device);
    let model = Trc::new(&vs.root(), &card.model, &card.problem, card.normalizer.clone())?;
    vs.load(&w).map_err(|e| CheckpointError::Io { path: w.display().to_string(), message: e.to_string() })?;
    check_weights(&vs, &model, &card, &w.display().to_string())?;
    Ok((vs, model, card))
}

/// A checkpoint that would answer every state FAILED is refused at load instead: every weight
/// finite, and the forward pass on a reference input (test-split instance 0 of seed 0 of the
/// card's problem, t_go the normalizer's mean when the problem leaves it free) finite.
///
/// # Errors
/// [`CheckpointError::Corrupt`] naming the first bad weight, or the non-finite output.
fn check_weights(vs: &nn::VarStore, model: &Trc, card: &ModelCard, path: &str) -> Result<(), CheckpointError> {
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &vars {
        if !bool::try_from(t.isfinite().all()).unwrap_or(false) {
            return Err(CheckpointError::Corrupt {
                path: path.into(),
                reason: format!("weights `{name}` hold NaN or infinite values; restore the file or retrain"),
            });
        }
    }
    let inst = crate::data::sample_instance(&card.problem, 0, crate::data::Split::Test, 0);
    let row = |v: &nalgebra::DVector<f64>| {
        tch::Tensor::from_slice(&v.iter().map(|&a| a as f32).collect::<Vec<f32>>()).view([1, v.len() as i64]).to_device(model.device())
    };
    let t_go = tch::Tensor::from_slice(&[inst.t_go.unwrap_or(card.normalizer.t_mean) as f32]).to_device(model.device());
    let out = tch::no_grad(|| model.forward_t(&row(&inst.x0), &row(&inst.x_target), &t_go, None, card.model.outer.max(1), false));
    let finite = |t: Option<&tch::Tensor>| t.is_some_and(|t| bool::try_from(t.isfinite().all()).unwrap_or(false));
    if !finite(out.u.last()) || !finite(out.x.last()) {
        return Err(CheckpointError::Corrupt {
            path: path.into(),
            reason: "the forward pass on a reference instance gives NaN or infinite controls (weights scaled out of range?); restore the file or retrain"
                .into(),
        });
    }
    Ok(())
}

/// SHA-256 of a file, hex.
///
/// # Errors
/// I/O errors reading the file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The current git commit, "+dirty" if tracked code has uncommitted changes (the pipeline's own
/// outputs under models/ and bench/ excepted), or "unknown".
pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(h) => {
            // the pipeline's own outputs (models/, bench/, BENCHMARKS.md) are not code: a model
            // written earlier in the same `make models` run must not mark the next one dirty
            let dirty =
                run(&["status", "--porcelain", "--untracked-files=no", "--", ".", ":!models", ":!bench", ":!BENCHMARKS.md"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{h}+dirty")
            } else {
                h
            }
        }
        None => "unknown".into(),
    }
}
