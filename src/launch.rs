//! The project's own launcher, equivalent to `launch/<problem>.launch.py` (`ros2 launch` cannot
//! be installed from the PyPI wheels these machines use): the same launch arguments with the
//! same defaults, the same executables, node names, parameter file and parameter overrides.
//! `tests/launch.rs` parses the Python launch files and checks they agree with [`spec`].

use std::path::Path;

use thiserror::Error;

use crate::config::ProblemKind;

/// A `DeclareLaunchArgument`.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchArg {
    /// Name.
    pub name: &'static str,
    /// Default value (as the launch file writes it).
    pub default: &'static str,
}

/// A `launch_ros.actions.Node`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLaunch {
    /// Executable (and node name).
    pub executable: &'static str,
    /// `IfCondition(LaunchConfiguration(...))` argument, if any.
    pub condition: Option<&'static str>,
    /// Parameter overrides `(parameter, launch argument)`, after the config file.
    pub params: Vec<(&'static str, &'static str)>,
}

/// One launch file.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// File under `launch/`.
    pub file: String,
    /// Parameter file under `config/`.
    pub config: String,
    /// Launch arguments.
    pub args: Vec<LaunchArg>,
    /// Nodes.
    pub nodes: Vec<NodeLaunch>,
}

/// A launch argument problem.
#[derive(Debug, Error, PartialEq)]
pub enum LaunchError {
    /// Unknown argument.
    #[error("unknown launch argument `{0}` (known: {1})")]
    Unknown(String, String),
    /// Not `name:=value`.
    #[error("launch arguments are name:=value, got `{0}`")]
    Syntax(String),
}

/// The launch spec of a problem (descent and Van der Pol have launch files; the double
/// integrator uses the Van der Pol layout with its own config).
pub fn spec(problem: ProblemKind) -> LaunchSpec {
    let stem = match problem {
        ProblemKind::Descent => "descent",
        ProblemKind::Vanderpol => "vanderpol",
        ProblemKind::DoubleIntegrator => "double_integrator",
    };
    LaunchSpec {
        file: format!("{stem}.launch.py"),
        config: format!("{stem}.yaml"),
        args: vec![
            LaunchArg { name: "sim", default: "false" },
            LaunchArg { name: "use_sim_time", default: "false" },
            LaunchArg { name: "time_scale", default: "1.0" },
            LaunchArg { name: "episodes", default: "5" },
            LaunchArg { name: "seed", default: "0" },
            LaunchArg { name: "results_file", default: "" },
            LaunchArg { name: "model", default: "" },
            LaunchArg { name: "device", default: "auto" },
            LaunchArg { name: "namespace", default: "" },
        ],
        nodes: vec![
            NodeLaunch {
                executable: "trc_node",
                condition: None,
                params: vec![("use_sim_time", "use_sim_time"), ("node.model", "model"), ("node.device", "device")],
            },
            NodeLaunch {
                executable: "trc_sim",
                condition: Some("sim"),
                params: vec![
                    ("use_sim_time", "use_sim_time"),
                    ("sim.time_scale", "time_scale"),
                    ("sim.episodes", "episodes"),
                    ("sim.seed", "seed"),
                    ("sim.results_file", "results_file"),
                ],
            },
        ],
    }
}

/// A process to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCommand {
    /// Executable name.
    pub executable: String,
    /// Arguments (`--ros-args --params-file ... -p name:=value ...`).
    pub args: Vec<String>,
}

/// The processes for `spec` with `name:=value` launch arguments, parameter files under
/// `package_root/config`. Empty string values are left out (they equal the config defaults).
/// `namespace:=vehicle_1` puts every node in `/vehicle_1` (`-r __ns:=/vehicle_1`, as
/// `Node(namespace=...)` does): its relative topics become `/vehicle_1/state` and so on (one
/// controller per vehicle; README "Several vehicles").
///
/// # Errors
/// [`LaunchError`] for an unknown argument or bad syntax.
pub fn resolve(spec: &LaunchSpec, launch_args: &[String], package_root: &Path) -> Result<Vec<NodeCommand>, LaunchError> {
    let mut values: Vec<(&str, String)> = spec.args.iter().map(|a| (a.name, a.default.to_string())).collect();
    for a in launch_args {
        let (k, v) = a.split_once(":=").ok_or_else(|| LaunchError::Syntax(a.clone()))?;
        let slot = values
            .iter_mut()
            .find(|(n, _)| *n == k)
            .ok_or_else(|| LaunchError::Unknown(k.into(), spec.args.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")))?;
        slot.1 = v.to_string();
    }
    let get = |n: &str| values.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let config = package_root.join("config").join(&spec.config);
    Ok(spec
        .nodes
        .iter()
        .filter(|n| n.condition.is_none_or(|c| matches!(get(c).to_ascii_lowercase().as_str(), "true" | "1")))
        .map(|n| {
            let mut args = vec!["--ros-args".to_string(), "-r".into(), format!("__node:={}", n.executable)];
            let ns = get("namespace");
            let ns = ns.trim_matches('/');
            if !ns.is_empty() {
                args.push("-r".into());
                args.push(format!("__ns:=/{ns}"));
            }
            args.push("--params-file".into());
            args.push(config.display().to_string());
            for (param, arg) in &n.params {
                let v = get(arg);
                if !v.is_empty() {
                    args.push("-p".into());
                    args.push(format!("{param}:={v}"));
                }
            }
            NodeCommand { executable: n.executable.to_string(), args }
        })
        .collect())
}
