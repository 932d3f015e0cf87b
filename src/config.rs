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
use crate::problems::{DescentParams, DoubleIntegratorParams, VanDerPolParams};

/// Which optimal-control problem a config, dataset or model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// 3-DoF powered descent with mass depletion (DESIGN.md §3).
    Descent,
    /// Van der Pol oscillator, mu = 1 (DESIGN.md §3).
    Vanderpol,
    /// Double integrator, the linear sanity check (DESIGN.md §3).
    DoubleIntegrator,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Descent => "descent",
            Self::Vanderpol => "vanderpol",
            Self::DoubleIntegrator => "double_integrator",
        })
    }
}

/// The `problem` section: which problem, and the parameters of each (defaults from DESIGN.md §3).
///
/// Only the section of the selected problem is used; the others may be omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemConfig {
    /// Selected problem.
    pub name: ProblemKind,
    /// Powered-descent parameters.
    #[serde(default)]
    pub descent: DescentParams,
    /// Van der Pol parameters.
    #[serde(default)]
    pub vanderpol: VanDerPolParams,
    /// Double-integrator parameters.
    #[serde(default)]
    pub double_integrator: DoubleIntegratorParams,
}

impl ProblemConfig {
    /// Default parameters for `name`.
    pub fn new(name: ProblemKind) -> Self {
        Self {
            name,
            descent: DescentParams::default(),
            vanderpol: VanDerPolParams::default(),
            double_integrator: DoubleIntegratorParams::default(),
        }
    }

    /// Checks the selected problem's parameters.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending field (e.g. `problem.descent.m_dry`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.name {
            ProblemKind::Descent => self.descent.validate("problem.descent"),
            ProblemKind::Vanderpol => self.vanderpol.validate("problem.vanderpol"),
            ProblemKind::DoubleIntegrator => {
                self.double_integrator.validate("problem.double_integrator")
            }
        }
    }

    /// Builds the selected problem as a trait object.
    ///
    /// # Errors
    /// As [`ProblemConfig::validate`].
    pub fn build(&self) -> Result<Box<dyn crate::problems::Problem>, ConfigError> {
        self.validate()?;
        Ok(match self.name {
            ProblemKind::Descent => Box::new(crate::problems::PoweredDescent::new(self.descent.clone())?),
            ProblemKind::Vanderpol => Box::new(crate::problems::VanDerPol::new(self.vanderpol.clone())?),
            ProblemKind::DoubleIntegrator => Box::new(crate::problems::DoubleIntegrator::new(
                self.double_integrator.clone(),
            )?),
        })
    }
}

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
    pub controller: crate::control::ControllerConfig,
    /// trc_node settings (static).
    #[serde(default)]
    pub node: NodeConfig,
    /// trc_sim settings (static).
    #[serde(default)]
    pub sim: crate::plant::SimConfig,
    /// The standard ROS 2 parameter: follow `/clock` (trc_sim publishes it) instead of the
    /// system clock. Default false.
    #[serde(default)]
    pub use_sim_time: bool,
}

/// trc_node settings (`node.*`; static).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Policy: `trc` (the network) or `solver` (the classical optimal-control solver, slow).
    pub policy: String,
    /// Checkpoint stem of the TRC model; empty = `models/<problem>`. A relative path is looked
    /// up from the working directory, then from the package root (the config file's `..`).
    pub model: String,
    /// Inference device: `auto` (CUDA if available), `cpu`, `cuda`.
    pub device: String,
    /// Forward passes run at start-up before the first state (warm-up). Default 5.
    pub warmup_passes: u32,
    /// Test drills only: sleep before refining [ms]. Default 0.
    pub inject_delay_ms: f64,
    /// Test drills only: sleep after each outer iteration [ms]. Default 0.
    pub inject_delay_between_ms: f64,
    /// Diagnostics period [s]. Default 1.
    pub diagnostics_period_s: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { policy: "trc".into(), model: String::new(), device: "auto".into(), warmup_passes: 5, inject_delay_ms: 0.0, inject_delay_between_ms: 0.0, diagnostics_period_s: 1.0 }
    }
}

impl NodeConfig {
    /// Checks values.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.policy.as_str(), "trc" | "solver") {
            return Err(ConfigError::invalid("node.policy", format!("`{}`: use trc or solver", self.policy)));
        }
        if !matches!(self.device.as_str(), "auto" | "cpu" | "cuda") {
            return Err(ConfigError::invalid("node.device", format!("`{}`: use auto, cpu or cuda", self.device)));
        }
        non_negative("node.inject_delay_ms", self.inject_delay_ms)?;
        non_negative("node.inject_delay_between_ms", self.inject_delay_between_ms)?;
        positive("node.diagnostics_period_s", self.diagnostics_period_s)
    }
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
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
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

/// If `doc` is a ROS 2 params file (`node: { ros__parameters: {...} }`), returns the parameters;
/// otherwise returns `doc` unchanged.
fn unwrap_ros_parameters(doc: serde_yaml::Value) -> Result<serde_yaml::Value, String> {
    let key = serde_yaml::Value::from("ros__parameters");
    if let serde_yaml::Value::Mapping(map) = &doc {
        let nodes: Vec<_> = map
            .iter()
            .filter(|(_, v)| v.as_mapping().is_some_and(|m| m.contains_key(&key)))
            .collect();
        match nodes.len() {
            0 => {}
            1 if map.len() == 1 => return Ok(nodes[0].1[&key].clone()),
            _ => {
                return Err(format!(
                    "params file must hold exactly one node section with ros__parameters, found {} top-level keys",
                    map.len()
                ))
            }
        }
    }
    Ok(doc)
}

/// Checks `value` is finite and strictly positive; names `field` otherwise.
pub(crate) fn positive(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, format!("must be finite and > 0, got {value}")))
    }
}

/// Checks `value` is finite and >= 0; names `field` otherwise.
pub(crate) fn non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, format!("must be finite and >= 0, got {value}")))
    }
}
