//! `node.*`: settings of `trc_node` (all static: fixed when the node starts).

use serde::{Deserialize, Serialize};

use crate::error::{non_negative, positive, ConfigError};

/// What refines the control sequence (`node.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// The TRC network (`node.model`).
    #[default]
    Trc,
    /// The classical optimal-control solver at the controller's t_go (slow; a reference).
    Solver,
    /// Descent only: the closed-form ZEM/ZEV guidance law planned over the horizon at the
    /// controller's t_go (`src/baseline.rs`; microseconds; a baseline).
    ZemZev,
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Trc => "trc",
            Self::Solver => "solver",
            Self::ZemZev => "zem_zev",
        })
    }
}

/// Where the network runs (`node.device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// Measured at start-up: with a CUDA device, batch-1 refinements are timed on the CPU and on
    /// CUDA and CUDA is taken only when at least 20% faster (`control::auto_device_rule`); without
    /// one, the CPU. The choice and both timings are logged. (`trc train/eval --device auto`: CUDA
    /// whenever available, since training is batched.)
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when none is available.
    Cuda,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// trc_node settings (`node.*`; static).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Policy: `trc` (the network) or `solver` (the classical optimal-control solver, slow).
    pub policy: PolicyKind,
    /// Checkpoint stem of the TRC model; empty = `models/<problem>`. A relative path is looked
    /// up from the working directory, then from the package root (the config file's `..`).
    pub model: String,
    /// Inference device: `auto` (measured at start-up: CUDA only when faster at batch 1), `cpu`, `cuda`.
    pub device: DeviceChoice,
    /// On a CUDA device, run the K-iteration refinement as a CUDA graph captured at warm-up
    /// (one launch instead of thousands; `model::cuda_graph`), falling back to eager execution,
    /// with a log line, where the capture fails. No effect on the CPU. Default true.
    pub cuda_graph: bool,
    /// Forward passes run at start-up before the first state (warm-up). Default 5.
    pub warmup_passes: u32,
    /// libtorch intra-op threads for CPU inference (`at::set_num_threads`, process-wide), set
    /// when the policy loads; 0 keeps libtorch's default (one per core). Default 1: a batch-1
    /// forward pass of the shipped network gains nothing from a second thread, and that thread
    /// competes with the control thread (terminal correction, deadline) for the cores the node
    /// is given (README, "Threads").
    pub torch_threads: u32,
    /// Test drills only: sleep before refining [ms]. Default 0.
    pub inject_delay_ms: f64,
    /// Test drills only: sleep after each outer iteration [ms]. Default 0.
    pub inject_delay_between_ms: f64,
    /// Diagnostics period [s]. Default 1.
    pub diagnostics_period_s: f64,
    /// Record the node's own inputs (state, odom, mass, goal, /clock) and outputs
    /// (control_sequence, command, /diagnostics) into a rosbag2 MCAP folder at this path (a
    /// `_<Unix seconds>` suffix is added when it exists); empty = off. Log times are the node's clock
    /// (sim time under use_sim_time). Default off. `docs/rosbags.md`.
    pub record_to: String,
    /// Publish `plan_markers` (`visualization_msgs/MarkerArray`: the predicted trajectory, the
    /// landing site and the thrust, in the plan's frame; `ros::markers`) with every answer for
    /// RViz or Foxglove. Default true (descent only).
    pub markers: bool,
    /// Start active, as an unmanaged node (load, warm up, answer). `false`: a managed
    /// (lifecycle) node that starts unconfigured and waits for `configure` (loads the model) and
    /// `activate` (warm-up, then answers) on its `lifecycle_msgs` services (README "Lifecycle").
    /// Default true.
    pub autostart: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            policy: PolicyKind::Trc,
            model: String::new(),
            device: DeviceChoice::Auto,
            cuda_graph: true,
            warmup_passes: 5,
            torch_threads: 1,
            inject_delay_ms: 0.0,
            inject_delay_between_ms: 0.0,
            diagnostics_period_s: 1.0,
            record_to: String::new(),
            markers: true,
            autostart: true,
        }
    }
}

impl NodeConfig {
    /// Checks values.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.torch_threads > 256 {
            return Err(ConfigError::invalid("node.torch_threads", format!("must be <= 256 (0 = libtorch default), got {}", self.torch_threads)));
        }
        non_negative("node.inject_delay_ms", self.inject_delay_ms)?;
        non_negative("node.inject_delay_between_ms", self.inject_delay_between_ms)?;
        positive("node.diagnostics_period_s", self.diagnostics_period_s)
    }
}
