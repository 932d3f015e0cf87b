//! launch/*.launch.py and the project's launcher (`trc launch`, src/launch.rs) agree: the same
//! launch arguments and defaults, executables, conditions, parameter file and overrides; and
//! every override names a real trc_control parameter.

use trc_control::config::{ProblemKind, TrcConfig};
use trc_control::launch::{resolve, spec};

/// Every `'a'` string following each occurrence of `key` in `text`.
fn quoted_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.match_indices(key)
        .filter_map(|(i, _)| {
            let rest = &text[i + key.len()..];
            let start = rest.find('\'')? + 1;
            let end = start + rest[start..].find('\'')?;
            Some(&rest[start..end])
        })
        .collect()
}

struct PyNode {
    executable: String,
    condition: Option<String>,
    params: Vec<(String, String)>,
}

fn py_nodes(text: &str) -> Vec<PyNode> {
    text.split(" = Node(")
        .skip(1)
        .map(|block| {
            let block = &block[..block.find("\n    )").unwrap_or(block.len())];
            let executable = quoted_after(block, "executable=")[0].to_string();
            let condition = quoted_after(block, "condition=IfCondition(LaunchConfiguration(").first().map(|s| s.to_string());
            let params = block
                .lines()
                .filter(|l| l.contains("': LaunchConfiguration('"))
                .map(|l| {
                    let q: Vec<&str> = l.split('\'').collect();
                    (q[1].to_string(), q[3].to_string())
                })
                .collect();
            PyNode { executable, condition, params }
        })
        .collect()
}

#[test]
fn launch_files_and_the_launcher_agree() {
    let root = env!("CARGO_MANIFEST_DIR");
    for kind in [ProblemKind::Descent, ProblemKind::Vanderpol] {
        let s = spec(kind);
        let text = std::fs::read_to_string(format!("{root}/launch/{}", s.file)).unwrap();
        // arguments and defaults
        let names = quoted_after(&text, "DeclareLaunchArgument(");
        let defaults = quoted_after(&text, "default_value=");
        let py_args: Vec<(&str, &str)> = names.into_iter().zip(defaults).collect();
        let rs_args: Vec<(&str, &str)> = s.args.iter().map(|a| (a.name, a.default)).collect();
        assert_eq!(py_args, rs_args, "{}: launch arguments differ", s.file);
        // parameter file
        assert!(text.contains(&format!("'config', '{}'", s.config)), "{}: parameter file must be config/{}", s.file, s.config);
        let cfg = TrcConfig::from_file(format!("{root}/config/{}", s.config)).unwrap();
        assert_eq!(cfg.problem.name, kind);
        // nodes
        let py = py_nodes(&text);
        assert_eq!(py.len(), s.nodes.len(), "{}: node count", s.file);
        let known: Vec<String> = cfg.parameters().into_iter().map(|(n, _)| n).collect();
        let blocks: Vec<&str> = text.split(" = Node(").skip(1).collect();
        for b in &blocks {
            assert!(b.contains("namespace=LaunchConfiguration('namespace')"), "{}: every node follows the `namespace` argument", s.file);
        }
        for (p, r) in py.iter().zip(&s.nodes) {
            assert_eq!(p.executable, r.executable);
            assert_eq!(p.condition.as_deref(), r.condition, "{}: condition of {}", s.file, r.executable);
            let rp: Vec<(String, String)> = r.params.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            assert_eq!(p.params, rp, "{}: parameter overrides of {}", s.file, r.executable);
            for (param, arg) in &rp {
                assert!(param == "use_sim_time" || known.iter().any(|k| k == param), "{param} is not a trc_control parameter");
                assert!(s.args.iter().any(|a| a.name == arg), "{arg} is not a launch argument");
            }
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin").join(format!("{}.rs", r.executable)).exists(),
                "{} is not a binary of this crate",
                r.executable
            );
        }
    }
}

#[test]
fn the_launcher_builds_the_commands_ros2_launch_would() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = spec(ProblemKind::Descent);
    let plain = resolve(&s, &[], root).unwrap();
    assert_eq!(plain.iter().map(|c| c.executable.as_str()).collect::<Vec<_>>(), ["trc_node"], "sim defaults to false");
    let with_sim = resolve(&s, &["sim:=true".into(), "episodes:=3".into(), "model:=models/descent".into()], root).unwrap();
    assert_eq!(with_sim.len(), 2);
    let node = &with_sim[0].args;
    assert!(node.windows(2).any(|w| w[0] == "--params-file" && w[1].ends_with("config/descent.yaml")));
    assert!(node.iter().any(|a| a == "node.model:=models/descent"));
    assert!(with_sim[1].args.iter().any(|a| a == "sim.episodes:=3"));
    assert!(!node.iter().any(|a| a.ends_with(":=")), "empty values are left to the config defaults");
    assert!(!node.iter().any(|a| a.starts_with("__ns:=")), "no namespace by default");
    // one vehicle per namespace: both nodes move, with or without the leading slash
    for ns in ["vehicle_1", "/vehicle_1"] {
        let v = resolve(&s, &["sim:=true".into(), format!("namespace:={ns}")], root).unwrap();
        for c in &v {
            assert!(c.args.windows(2).any(|w| w[0] == "-r" && w[1] == "__ns:=/vehicle_1"), "{}: {:?}", c.executable, c.args);
        }
    }
    assert!(resolve(&s, &["episode:=3".into()], root).unwrap_err().to_string().contains("unknown launch argument `episode`"));
    assert!(resolve(&s, &["sim=true".into()], root).is_err());
}
