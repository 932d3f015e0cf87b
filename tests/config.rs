//! Config loading: the shipped files load, and bad YAML is refused with a message naming the field.

use trc_control::config::{ProblemKind, TrcConfig};
use trc_control::error::ConfigError;

fn err(yaml: &str) -> String {
    match TrcConfig::from_yaml_str(yaml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_configs_load_and_build() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    for (file, kind) in
        [("descent.yaml", ProblemKind::Descent), ("vanderpol.yaml", ProblemKind::Vanderpol), ("double_integrator.yaml", ProblemKind::DoubleIntegrator)]
    {
        let cfg = TrcConfig::from_file(format!("{dir}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(cfg.problem.name, kind);
        let p = cfg.problem.build().unwrap();
        assert_eq!(p.kind(), kind);
    }
}

#[test]
fn bare_and_ros_params_forms_are_equal() {
    let bare = TrcConfig::from_yaml_str("problem:\n  name: descent\n  descent:\n    m_wet: 2000.0\n").unwrap();
    let ros = TrcConfig::from_yaml_str("trc_node:\n  ros__parameters:\n    problem:\n      name: descent\n      descent:\n        m_wet: 2000.0\n").unwrap();
    assert_eq!(bare, ros);
    assert_eq!(bare.problem.descent.m_wet, 2000.0);
    assert_eq!(bare.problem.descent.m_dry, 1505.0, "unset fields take the defaults of docs/problems.md");
}

#[test]
fn unknown_key_is_refused_by_name() {
    let e = err("problem:\n  name: descent\n  descent:\n    m_wett: 2000.0\n");
    assert!(e.contains("m_wett"), "{e}");
    let e = err("problem:\n  name: descent\n  colour: red\n");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn negative_mass_is_refused_by_name() {
    let e = err("problem:\n  name: descent\n  descent:\n    m_dry: -5.0\n");
    assert!(e.contains("problem.descent.m_dry") && e.contains("> 0"), "{e}");
    let e = err("problem:\n  name: descent\n  descent:\n    m_wet: -1905.0\n");
    assert!(e.contains("problem.descent.m_wet"), "{e}");
}

#[test]
fn dry_mass_above_wet_mass_is_refused() {
    let e = err("problem:\n  name: descent\n  descent:\n    m_dry: 2000.0\n");
    assert!(e.contains("problem.descent.m_dry") && e.contains("m_wet"), "{e}");
}

#[test]
fn rho1_above_rho2_is_refused() {
    let e = err("problem:\n  name: descent\n  descent:\n    rho1: 9000.0\n    rho2: 8000.0\n");
    assert!(e.contains("problem.descent.rho1") && e.contains("rho2"), "{e}");
    let e = err("problem:\n  name: descent\n  descent:\n    throttle_min: 0.9\n");
    assert!(e.contains("problem.descent.throttle_min"), "{e}");
}

#[test]
fn wrong_type_and_bad_other_problems_are_refused() {
    let e = err("problem:\n  name: descent\n  descent:\n    horizon: fifty\n");
    assert!(e.contains("horizon"), "{e}");
    let e = err("problem:\n  name: vanderpol\n  vanderpol:\n    u_max: 0.0\n");
    assert!(e.contains("problem.vanderpol.u_max"), "{e}");
    let e = err("problem:\n  name: rocket\n");
    assert!(e.contains("rocket"), "{e}");
}

#[test]
fn missing_file_says_which() {
    match TrcConfig::from_file("/nonexistent/trc.yaml") {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, "/nonexistent/trc.yaml"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_policy_and_device_are_enums_refused_by_name() {
    let e = err("problem:\n  name: descent\nnode:\n  policy: magic\n");
    assert!(e.contains("node.policy") && e.contains("magic"), "{e}");
    let e = err("problem:\n  name: descent\nnode:\n  device: tpu\n");
    assert!(e.contains("node.device") && e.contains("tpu"), "{e}");
    let ok = TrcConfig::from_yaml_str("problem:\n  name: descent\nnode:\n  policy: solver\n  device: cpu\n").unwrap();
    assert_eq!((ok.node.policy, ok.node.device), (trc_control::config::PolicyKind::Solver, trc_control::config::DeviceChoice::Cpu));
}

/// The README's parameter table: `| `name` | static/live | ...` rows.
fn readme_table() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[1].starts_with('`') && matches!(cells[2], "static" | "live"))
                .then(|| (cells[1].trim_matches('`').to_string(), cells[2].to_string()))
        })
        .collect()
}

#[test]
fn live_parameters_are_declared_per_field_and_the_readme_table_agrees() {
    use trc_control::config::{Mutability, LIVE_PARAMETERS};
    let table = readme_table();
    for file in ["descent.yaml", "vanderpol.yaml", "double_integrator.yaml"] {
        let cfg = TrcConfig::from_file(format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let names: Vec<String> = cfg.parameters().into_iter().map(|(n, _)| n).collect();
        for live in LIVE_PARAMETERS {
            assert!(names.iter().any(|n| n == live), "{file}: LIVE_PARAMETERS lists `{live}`, which is not a parameter");
        }
        assert_eq!(cfg.mutability("controller.outer"), Some(Mutability::Static), "K is fixed when the model loads");
        assert_eq!(cfg.mutability("controller.deadline_s"), Some(Mutability::Live));
        assert_eq!(cfg.mutability("foo.bar"), None, "an unknown name is not a parameter (not a static one)");
        for name in &names {
            let m = cfg.mutability(name).unwrap();
            if name.starts_with("problem.") {
                assert_eq!(m, Mutability::Static, "{name}");
                continue;
            }
            let row = table.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("README's parameter table lacks `{name}`"));
            let want = if m == Mutability::Live { "live" } else { "static" };
            assert_eq!(row.1, want, "README says `{name}` is {}, the code says {want}", row.1);
        }
    }
    assert!(table.iter().any(|(n, m)| n == "problem.*" && m == "static"), "README's table has a `problem.*` row");
}

#[test]
fn a_sub_millisecond_deadline_and_bad_plausibility_gates_are_refused_by_name() {
    let e = err("problem:\n  name: descent\ncontroller:\n  deadline_s: 0.000001\n");
    assert!(e.contains("controller.deadline_s") && e.contains("0.001"), "{e}");
    for (key, value) in [("max_speed_factor", "0.0"), ("mass_tolerance", "1.5"), ("max_range_m", "-1.0"), ("max_goal_lead_s", "-1.0"), ("min_t_go_s", "-3.0")] {
        let e = err(&format!("problem:\n  name: descent\ncontroller:\n  plausibility:\n    {key}: {value}\n"));
        assert!(e.contains(&format!("controller.plausibility.{key}")), "{key}: {e}");
    }
    let e = err("problem:\n  name: descent\ncontroller:\n  plausibility:\n    frame: map\n");
    assert!(e.contains("frame"), "an unknown gate is refused by name: {e}");
}
