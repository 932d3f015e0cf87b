//! Configuration shared by the CLI and the node: serde structs for the YAML in `config/`,
//! validated on load.
//!
//! A config file is either a bare [`TrcConfig`] document or the ROS 2 params-file form the node
//! receives (`<node_name>: { ros__parameters: <TrcConfig> }`); [`TrcConfig::from_yaml_str`] accepts
//! both, so the CLI and `trc_node` read the very same file. Every struct denies unknown keys, so a
//! typo is an error naming the key rather than a silently ignored setting.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
mod controller;
mod node;
mod sim;

pub use crate::error::{non_negative, positive};
pub use crate::problems::{ProblemConfig, ProblemKind};
pub use controller::{ControllerConfig, CorrectionModel, Plausibility, TerminalCorrection, DEFAULT_COST_REFINEMENT_STEPS};
pub use node::{DeviceChoice, NodeConfig, PolicyKind};
pub use sim::{Disturbances, SimConfig};

/// Everything trc_control reads from a config file: the problem, the receding-horizon
/// controller, the node and the plant simulator. Both nodes and the CLI read the same file;
/// each uses its sections (`trc_node`: problem, controller, node; `trc_sim`: problem, sim).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrcConfig {
    /// The optimal-control problem (static: a node refuses to change it at run time).
    pub problem: ProblemConfig,
    /// Receding-horizon controller settings (may change at run time).
    #[serde(default)]
    pub controller: ControllerConfig,
    /// trc_node settings (static).
    #[serde(default)]
    pub node: NodeConfig,
    /// trc_sim settings (static).
    #[serde(default)]
    pub sim: SimConfig,
    /// The standard ROS 2 parameter: follow `/clock` (trc_sim publishes it) instead of the
    /// system clock. Default false.
    #[serde(default)]
    pub use_sim_time: bool,
}

impl TrcConfig {
    /// Parses and validates a config from YAML text, bare or in ROS 2 params-file form.
    ///
    /// In params-file form the document must have exactly one top-level node key (or `/**`)
    /// holding `ros__parameters`.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for malformed YAML, unknown keys or wrong types (the message names
    /// the key); [`ConfigError::Invalid`] for out-of-range values.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a config file (see [`TrcConfig::from_yaml_str`]).
    ///
    /// # Errors
    /// [`ConfigError::Io`] if the file cannot be read, otherwise as [`TrcConfig::from_yaml_str`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text, Some(path.display().to_string()))
    }

    fn parse(text: &str, path: Option<String>) -> Result<Self, ConfigError> {
        let perr = |message: String| ConfigError::Parse { path: path.clone(), message };
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| perr(e.to_string()))?;
        let body = unwrap_ros_parameters(doc).map_err(perr)?;
        Self::from_value(body, path)
    }

    /// Parses and validates the parameters of a config already in YAML-value form (bare, not
    /// the params-file wrapper); `path` names the source in errors.
    ///
    /// # Errors
    /// As [`TrcConfig::from_yaml_str`].
    pub fn from_value(body: serde_yaml::Value, path: Option<String>) -> Result<Self, ConfigError> {
        let perr = |message: String| ConfigError::Parse { path: path.clone(), message };
        // serde_path_to_error names the key even for type errors (`problem.descent.horizon: ...`).
        let cfg: TrcConfig = serde_path_to_error::deserialize(body).map_err(|e| {
            let at = e.path().to_string();
            perr(if at == "." { e.into_inner().to_string() } else { format!("{at}: {}", e.into_inner()) })
        })?;
        cfg.problem.validate()?;
        cfg.controller.validate()?;
        cfg.node.validate()?;
        cfg.sim.validate()?;
        Ok(cfg)
    }
}

/// Whether a parameter may change while a node runs (nav2's static / dynamic parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Fixed at start-up (the problem, the model, the plant, `use_sim_time`, `controller.outer`):
    /// a live change is refused with the reason.
    Static,
    /// May change at run time, validated; the controller takes it from the next cycle.
    Live,
}

/// The parameters that may change at run time, by full dotted name; every other parameter is
/// static. Declared per field (not by prefix): a new `controller.*` field is static until it is
/// listed here, and `tests/config.rs` holds this list, the config and the README's parameter
/// table in agreement.
pub const LIVE_PARAMETERS: &[&str] = &[
    "controller.deadline_s",
    "controller.max_state_age_s",
    "controller.terminal_phase_s",
    "controller.warm_start",
    "controller.command_hold_s",
    "controller.gate_altitude_m",
    "controller.gate_sink_rate_mps",
    "controller.gate_max_tilt_deg",
    "controller.gate_lateral_gain_per_s",
    "controller.gate_lateral_position_gain_per_s2",
    "controller.disturbance_observer_s",
    "controller.position_filter_gain",
    "controller.warm_correction",
    "controller.cost_refinement_steps",
    "controller.terminal_correction.enabled",
    "controller.terminal_correction.model",
    "controller.terminal_correction.max_iterations",
    "controller.terminal_correction.tol",
    "controller.terminal_correction.max_retime_s",
    "controller.terminal_correction.retime_threshold",
    "controller.terminal_correction.retime_with_policy",
    "controller.terminal_correction.thrust_margin",
    "controller.terminal_correction.release_threshold",
    "controller.terminal_correction.reserve_retime_s",
    "controller.plausibility.frame_id",
    "controller.plausibility.min_altitude_m",
    "controller.plausibility.max_speed_factor",
    "controller.plausibility.mass_tolerance",
    "controller.plausibility.max_range_m",
    "controller.plausibility.max_goal_lead_s",
    "controller.plausibility.min_t_go_s",
    "controller.plausibility.min_goal_interval_s",
];

impl TrcConfig {
    /// Every parameter of this config as a dotted name (`problem.descent.m_wet`, ...) with its
    /// value, in file order (nulls left out): the names a node declares.
    pub fn parameters(&self) -> Vec<(String, serde_yaml::Value)> {
        fn walk(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<(String, serde_yaml::Value)>) {
            match v {
                serde_yaml::Value::Mapping(m) => {
                    for (k, v) in m {
                        let key = k.as_str().unwrap_or_default();
                        walk(&if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }, v, out);
                    }
                }
                serde_yaml::Value::Null => {}
                other => out.push((prefix.to_string(), other.clone())),
            }
        }
        let mut out = Vec::new();
        if let Ok(v) = serde_yaml::to_value(self) {
            walk("", &v, &mut out);
        }
        out
    }

    /// Whether `name` may change at run time; `None` when it is not a parameter of this config.
    pub fn mutability(&self, name: &str) -> Option<Mutability> {
        if !self.parameters().iter().any(|(n, _)| n == name) {
            return None;
        }
        Some(if LIVE_PARAMETERS.contains(&name) { Mutability::Live } else { Mutability::Static })
    }
}

/// If `doc` is a ROS 2 params file (`node: { ros__parameters: {...} }`), returns the parameters;
/// otherwise returns `doc` unchanged.
fn unwrap_ros_parameters(doc: serde_yaml::Value) -> Result<serde_yaml::Value, String> {
    let key = serde_yaml::Value::from("ros__parameters");
    if let serde_yaml::Value::Mapping(map) = &doc {
        let nodes: Vec<_> = map.iter().filter(|(_, v)| v.as_mapping().is_some_and(|m| m.contains_key(&key))).collect();
        match nodes.len() {
            0 => {}
            1 if map.len() == 1 => return Ok(nodes[0].1[&key].clone()),
            _ => return Err(format!("params file must hold exactly one node section with ros__parameters, found {} top-level keys", map.len())),
        }
    }
    Ok(doc)
}
