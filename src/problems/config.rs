//! Which problem, and its parameters: the `problem` section of a config file (problem data in
//! `docs/problems.md`). Below everything else: problems import nothing from the layers above.

use serde::{Deserialize, Serialize};

use super::{DescentParams, DoubleIntegratorParams, VanDerPolParams};
use crate::error::ConfigError;

/// Which optimal-control problem a config, dataset or model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// 3-DoF powered descent with mass depletion (docs/problems.md).
    Descent,
    /// Van der Pol oscillator, mu = 1 (docs/problems.md).
    Vanderpol,
    /// Double integrator, the linear sanity check (docs/problems.md).
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

/// The `problem` section: which problem, and the parameters of each (defaults from docs/problems.md).
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
        Self { name, descent: DescentParams::default(), vanderpol: VanDerPolParams::default(), double_integrator: DoubleIntegratorParams::default() }
    }

    /// Checks the selected problem's parameters.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending field (e.g. `problem.descent.m_dry`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.name {
            ProblemKind::Descent => self.descent.validate("problem.descent"),
            ProblemKind::Vanderpol => self.vanderpol.validate("problem.vanderpol"),
            ProblemKind::DoubleIntegrator => self.double_integrator.validate("problem.double_integrator"),
        }
    }

    /// Builds the selected problem as a trait object.
    ///
    /// # Errors
    /// As [`ProblemConfig::validate`].
    pub fn build(&self) -> Result<Box<dyn super::Problem>, ConfigError> {
        self.validate()?;
        Ok(match self.name {
            ProblemKind::Descent => Box::new(super::PoweredDescent::new(self.descent.clone())?),
            ProblemKind::Vanderpol => Box::new(super::VanDerPol::new(self.vanderpol.clone())?),
            ProblemKind::DoubleIntegrator => Box::new(super::DoubleIntegrator::new(self.double_integrator.clone())?),
        })
    }
}
