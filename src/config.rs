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

/// Everything trc_control reads from a config file. Later layers (controller, model, node)
/// add their sections here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrcConfig {
    /// The optimal-control problem.
    pub problem: ProblemConfig,
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
        // serde_path_to_error names the key even for type errors (`problem.descent.horizon: ...`).
        let cfg: TrcConfig = serde_path_to_error::deserialize(body).map_err(|e| {
            let at = e.path().to_string();
            perr(if at == "." { e.into_inner().to_string() } else { format!("{at}: {}", e.into_inner()) })
        })?;
        cfg.problem.validate()?;
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
