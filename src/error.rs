//! Typed errors, one enum per layer. Each message says what was wrong and what to do.

use thiserror::Error;

/// Errors from loading or validating configuration (YAML problem / node parameters).
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source} (check the path and permissions)")]
    Io {
        /// Path that was tried.
        path: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not parse or did not match the schema (unknown key, wrong type).
    #[error("invalid config YAML{}: {message} (fix the named key; see config/*.yaml for the accepted keys)", .path.as_ref().map(|p| format!(" in {p}")).unwrap_or_default())]
    Parse {
        /// Path of the file, when the YAML came from one.
        path: Option<String>,
        /// serde_yaml's message, which names the offending field and location.
        message: String,
    },
    /// A value parsed but is out of its valid range.
    #[error("invalid value for `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the offending field, e.g. `problem.descent.m_dry`.
        field: String,
        /// What is wrong and what range is accepted.
        reason: String,
    },
}

impl ConfigError {
    /// Builds [`ConfigError::Invalid`] for `field` with `reason`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Errors from problem evaluation (dimension mismatches between inputs and the problem).
#[derive(Debug, Error, PartialEq)]
pub enum ProblemError {
    /// An input array had the wrong length or shape.
    #[error("{what}: expected {expected}, got {got} (the problem is `{problem}`; check state_dim/control_dim/horizon)")]
    Shape {
        /// Problem name.
        problem: &'static str,
        /// Which input.
        what: &'static str,
        /// Expected shape, as text.
        expected: String,
        /// Actual shape, as text.
        got: String,
    },
}

/// Checks `value` is finite and strictly positive; names `field` otherwise.
pub fn positive(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, format!("must be finite and > 0, got {value}")))
    }
}

/// Checks `value` is finite and >= 0; names `field` otherwise.
pub fn non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(field, format!("must be finite and >= 0, got {value}")))
    }
}
