//! ROS 2 parameters of the nodes: the [`TrcConfig`] flattened to dotted names
//! (`problem.descent.m_wet`, `controller.deadline_s`, ...), and a parameter store that accepts
//! live changes of the dynamic ones (`controller.*`) and refuses the static ones with a reason.

use std::sync::{Arc, Mutex};

use r2r::indexmap::IndexMap;
use r2r::{Parameter, ParameterValue, RosParams};
use serde_yaml::Value;

use crate::config::{Mutability, TrcConfig};
use crate::error::ConfigError;

fn to_param(v: &Value) -> Option<ParameterValue> {
    Some(match v {
        Value::Bool(b) => ParameterValue::Bool(*b),
        Value::Number(n) if n.is_i64() => ParameterValue::Integer(n.as_i64()?),
        Value::Number(n) => ParameterValue::Double(n.as_f64()?),
        Value::String(s) => ParameterValue::String(s.clone()),
        Value::Sequence(items) if items.iter().all(|i| i.is_number()) => ParameterValue::DoubleArray(items.iter().filter_map(Value::as_f64).collect()),
        _ => return None,
    })
}

fn to_value(p: &ParameterValue) -> Option<Value> {
    Some(match p {
        ParameterValue::Bool(b) => Value::Bool(*b),
        ParameterValue::Integer(i) => Value::Number((*i).into()),
        ParameterValue::Double(d) => Value::Number((*d).into()),
        ParameterValue::String(s) => Value::String(s.clone()),
        ParameterValue::DoubleArray(a) => Value::Sequence(a.iter().map(|d| Value::Number((*d).into())).collect()),
        ParameterValue::IntegerArray(a) => Value::Sequence(a.iter().map(|d| Value::Number((*d).into())).collect()),
        _ => return None,
    })
}

/// The config as dotted ROS parameter names and values ([`TrcConfig::parameters`]).
pub fn flatten(cfg: &TrcConfig) -> IndexMap<String, ParameterValue> {
    cfg.parameters().into_iter().filter_map(|(name, v)| Some((name, to_param(&v)?))).collect()
}

/// `cfg` with parameter `name` set to `value`, validated.
///
/// # Errors
/// [`ConfigError`] for an unknown name, a wrong type or an invalid value.
pub fn with_parameter(cfg: &TrcConfig, name: &str, value: &ParameterValue) -> Result<TrcConfig, ConfigError> {
    let mut doc = serde_yaml::to_value(cfg).map_err(|e| ConfigError::invalid(name, e.to_string()))?;
    let new = to_value(value).ok_or_else(|| ConfigError::invalid(name, "unsupported parameter type"))?;
    let mut node = &mut doc;
    let parts: Vec<&str> = name.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = node.as_mapping_mut().ok_or_else(|| ConfigError::invalid(name, "not a parameter of trc_control"))?;
        let key = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            if !map.contains_key(&key) {
                return Err(ConfigError::invalid(name, "not a parameter of trc_control (see config/*.yaml)"));
            }
            map.insert(key, new.clone());
            break;
        }
        node = map.get_mut(&key).ok_or_else(|| ConfigError::invalid(name, "not a parameter of trc_control (see config/*.yaml)"))?;
    }
    TrcConfig::from_value(doc, Some(format!("parameter {name}")))
}

/// The node's parameter store for `Node::make_derived_parameter_handler`: every config entry is
/// a parameter; the live ones ([`crate::config::LIVE_PARAMETERS`]) may be set at run time
/// (validated; the controller takes them on the next cycle), a static one is refused with the
/// reason, an unknown name as not a parameter.
#[derive(Debug)]
pub struct ParamStore {
    /// The live configuration.
    pub cfg: Arc<Mutex<TrcConfig>>,
}

fn refuse(name: &str, msg: String) -> r2r::Error {
    r2r::Error::ParameterValueConv { name: name.to_string(), msg }
}

impl ParamStore {
    /// A copy of the live configuration (a poisoned lock still holds the last written value).
    pub fn config(&self) -> TrcConfig {
        self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn check(&self, name: &str, val: &ParameterValue) -> r2r::Result<TrcConfig> {
        let cur = self.config();
        let refused = match cur.mutability(name) {
            Some(Mutability::Live) => match with_parameter(&cur, name, val) {
                Ok(new) => return Ok(new),
                Err(e) => refuse(name, e.to_string()),
            },
            Some(Mutability::Static) => refuse(name, "static parameter: change it in the params file (or with -p at start-up) and restart the node".into()),
            None => refuse(name, "not a parameter of trc_control (see the README's parameter table)".into()),
        };
        log::warn!("parameter {name} := {val:?} refused: {refused}");
        Err(refused)
    }
}

impl RosParams for ParamStore {
    fn register_parameters(&mut self, _prefix: &str, _param: Option<Parameter>, params: &mut IndexMap<String, Parameter>) -> r2r::Result<()> {
        for (name, value) in flatten(&self.config()) {
            params.insert(name, Parameter::new(value));
        }
        Ok(())
    }

    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        flatten(&self.config()).get(name).cloned().ok_or_else(|| r2r::Error::InvalidParameterName { name: name.to_string() })
    }

    fn set_parameter(&mut self, name: &str, val: &ParameterValue) -> r2r::Result<()> {
        let new = self.check(name, val)?;
        log::info!("parameter {name} set to {val:?}");
        *self.cfg.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    fn check_parameter(&self, name: &str, val: &ParameterValue) -> r2r::Result<()> {
        self.check(name, val).map(|_| ())
    }
}

/// Start-up configuration of a node: the params file named after `--params-file` in `args`
/// (read with serde, so an unknown key or a bad value is refused with its name), with the
/// command line's `-p name:=value` overrides (`overrides`, as rcl parsed them) applied on top.
/// Returns the config and the names of overrides that are not trc_control parameters.
///
/// # Errors
/// [`ConfigError`] when no params file is given, it does not parse, or an override is invalid.
pub fn startup_config(args: &[String], overrides: &IndexMap<String, ParameterValue>) -> Result<(TrcConfig, Vec<String>), ConfigError> {
    // the first params file is the trc_control config; later ones (launch_ros writes one for a
    // `parameters=[file, {...}]` dict) reach us through rcl as `overrides`
    let path = args
        .windows(2)
        .find(|w| w[0] == "--params-file")
        .map(|w| w[1].clone())
        .ok_or_else(|| ConfigError::invalid("--params-file", "trc_control nodes need a params file: --ros-args --params-file config/descent.yaml"))?;
    let mut cfg = TrcConfig::from_file(&path)?;
    let known = flatten(&cfg);
    let mut unknown = Vec::new();
    for (name, p) in overrides {
        if name == "use_sim_time" {
            if let ParameterValue::Bool(b) = p {
                cfg.use_sim_time = *b;
            }
            continue;
        }
        match known.get(name) {
            Some(v) if v == p => {}
            Some(_) => cfg = with_parameter(&cfg, name, p)?,
            None => unknown.push(name.clone()),
        }
    }
    Ok((cfg, unknown))
}

/// The start-up configuration of `node`: [`startup_config`] from this process's arguments and the
/// overrides rcl parsed into `node.params`; every override that is not a trc_control parameter
/// is logged and ignored.
///
/// # Errors
/// As [`startup_config`]; a poisoned parameter lock.
pub fn node_startup_config(node: &r2r::Node) -> Result<TrcConfig, ConfigError> {
    let args: Vec<String> = std::env::args().collect();
    let overrides = node
        .params
        .lock()
        .map_err(|_| ConfigError::invalid("parameters", "the node's parameter lock is poisoned"))?
        .iter()
        .map(|(k, p)| (k.clone(), p.value.clone()))
        .collect();
    let (cfg, unknown) = startup_config(&args, &overrides)?;
    for u in unknown {
        log::warn!("parameter `{u}` is not a trc_control parameter; ignored");
    }
    Ok(cfg)
}
