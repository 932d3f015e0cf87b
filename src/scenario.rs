//! Scenarios a user gives (`trc closed-loop --scenario FILE`, `--x0 ... --target ...`;
//! `sim.scenario` for `trc_sim`, the launch file and `trc demo`): an initial state, a target, an
//! optional landing time and an optional vehicle, instead of states drawn from the sampler.
//!
//! A scenario file (YAML; shipped examples in `scenarios/`):
//!
//! ```yaml
//! name: scptoolbox_lcvx
//! source: UW-ACL SCPToolbox.jl examples/rocket_landing (after Acikmese & Ploen 2007)
//! problem:              # optional: overrides of the config's `problem` section (the vehicle)
//!   descent: { isp: 200.3, pointing_max_deg: 40.0 }
//! x0: [2000.0, 0.0, 1500.0, 80.0, 30.0, -75.0, 1905.0]   # state, problem units (SI)
//! x_target: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1505.0]
//! t_go: 0.0             # [s]; 0 = the optimum's (descent: LCvx minimum-fuel t_f)
//! ```
//!
//! Every episode of a scenario starts from the same state; the episode index only changes the
//! disturbance draws.

use std::path::Path;

use serde::Deserialize;

use crate::config::TrcConfig;
use crate::error::ConfigError;

/// A scenario (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name for reports.
    pub name: String,
    /// Where the numbers come from.
    #[serde(default)]
    pub source: String,
    /// Overrides of the config's `problem` section (merged key by key).
    #[serde(default)]
    pub problem: Option<serde_yaml::Value>,
    /// Initial state x0, length n, problem units.
    pub x0: Vec<f64>,
    /// Target state, length n (descent: its mass entry is free).
    pub x_target: Vec<f64>,
    /// Time-to-go of the goal [s]; 0 = the optimum's (descent: LCvx minimum-fuel t_f; the
    /// fixed-horizon problems always use N dt).
    #[serde(default)]
    pub t_go: f64,
}

/// Merges `over` into `base` key by key (mappings recursively; anything else replaced).
fn merge(base: &mut serde_yaml::Value, over: &serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl Scenario {
    /// Reads a scenario file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file when it cannot be read or parsed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::invalid("scenario", format!("cannot read {}: {e}", path.display())))?;
        serde_yaml::from_str(&text).map_err(|e| ConfigError::invalid("scenario", format!("{}: {e}", path.display())))
    }

    /// A scenario from the command line: `x0` and `x_target` as given, the config's vehicle.
    pub fn from_states(x0: Vec<f64>, x_target: Vec<f64>, t_go: f64) -> Self {
        Self { name: "command line".into(), source: String::new(), problem: None, x0, x_target, t_go }
    }

    /// Applies the scenario's vehicle to `cfg.problem` and checks the states against it.
    ///
    /// # Errors
    /// [`ConfigError`] for overrides that do not make a valid problem, or states of the wrong
    /// length or with a non-finite entry.
    pub fn apply(&self, cfg: &mut TrcConfig) -> Result<(), ConfigError> {
        if let Some(over) = &self.problem {
            let mut base = serde_yaml::to_value(&cfg.problem).map_err(|e| ConfigError::invalid("scenario.problem", e.to_string()))?;
            merge(&mut base, over);
            cfg.problem = serde_yaml::from_value(base).map_err(|e| ConfigError::invalid("scenario.problem", e.to_string()))?;
        }
        let n = cfg.problem.build()?.state_dim();
        for (what, v) in [("scenario.x0", &self.x0), ("scenario.x_target", &self.x_target)] {
            if v.len() != n {
                return Err(ConfigError::invalid(what, format!("has {} entries, the {} state has {n}", v.len(), cfg.problem.name)));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(ConfigError::invalid(what, format!("entry {i} is not finite")));
            }
        }
        if !(self.t_go.is_finite() && self.t_go >= 0.0) {
            return Err(ConfigError::invalid("scenario.t_go", format!("{} must be finite and >= 0", self.t_go)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProblemConfig, ProblemKind};

    fn descent() -> TrcConfig {
        TrcConfig::from_yaml_str("problem:\n  name: descent\n").unwrap()
    }

    #[test]
    fn a_scenario_overrides_the_vehicle_and_rejects_bad_states() {
        let s: Scenario = serde_yaml::from_str(
            "name: t\nproblem: { descent: { pointing_max_deg: 40.0 } }\nx0: [0, 0, 1500, 0, 0, -50, 1905]\nx_target: [0, 0, 0, 0, 0, 0, 1505]\n",
        )
        .unwrap();
        let mut cfg = descent();
        s.apply(&mut cfg).unwrap();
        assert_eq!(cfg.problem.descent.pointing_max_deg, 40.0);
        assert_eq!(cfg.problem.descent.m_wet, ProblemConfig::new(ProblemKind::Descent).descent.m_wet);
        let bad = Scenario { x0: vec![0.0; 6], ..s.clone() };
        assert!(bad.apply(&mut descent()).unwrap_err().to_string().contains("scenario.x0"));
        let nan = Scenario { x_target: vec![f64::NAN; 7], ..s };
        assert!(nan.apply(&mut descent()).is_err());
    }
}
