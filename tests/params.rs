//! Node parameters (no DDS): the config flattens to dotted ROS parameter names; `controller.*`
//! changes are validated and applied, static ones (problem, node, sim, use_sim_time) refused
//! with the reason; command-line overrides apply on top of the params file.

use std::sync::{Arc, Mutex};

use r2r::indexmap::IndexMap;
use r2r::{ParameterValue, RosParams};
use trc_control::config::TrcConfig;
use trc_control::ros::params::{flatten, startup_config, ParamStore};

fn descent() -> (String, TrcConfig) {
    let path = format!("{}/config/descent.yaml", env!("CARGO_MANIFEST_DIR"));
    (path.clone(), TrcConfig::from_file(path).unwrap())
}

#[test]
fn flattened_names_cover_every_section() {
    let (_, cfg) = descent();
    let flat = flatten(&cfg);
    assert_eq!(flat.get("problem.descent.m_wet"), Some(&ParameterValue::Double(1905.0)));
    assert_eq!(flat.get("problem.descent.horizon"), Some(&ParameterValue::Integer(50)));
    assert!(matches!(flat.get("problem.descent.gravity"), Some(ParameterValue::DoubleArray(g)) if g.len() == 3));
    for k in ["controller.deadline_s", "node.model", "node.device", "sim.rate_hz", "use_sim_time"] {
        assert!(flat.contains_key(k), "{k}");
    }
}

#[test]
fn dynamic_parameters_apply_and_static_ones_are_refused() {
    let (_, cfg) = descent();
    let shared = Arc::new(Mutex::new(cfg));
    let mut store = ParamStore { cfg: shared.clone() };
    store.set_parameter("controller.deadline_s", &ParameterValue::Double(0.02)).unwrap();
    assert_eq!(shared.lock().unwrap().controller.deadline_s, 0.02);
    let bad = store.set_parameter("controller.deadline_s", &ParameterValue::Double(-1.0)).unwrap_err().to_string();
    assert!(bad.contains("deadline_s"), "{bad}");
    assert!(store.set_parameter("controller.deadline_s", &ParameterValue::String("fast".into())).is_err(), "wrong type");
    assert_eq!(shared.lock().unwrap().controller.deadline_s, 0.02, "a refused value leaves the old one");
    for (name, v) in [
        ("problem.descent.m_wet", ParameterValue::Double(2000.0)),
        ("node.model", ParameterValue::String("x".into())),
        ("use_sim_time", ParameterValue::Bool(true)),
    ] {
        let e = store.set_parameter(name, &v).unwrap_err().to_string();
        assert!(e.contains("static parameter"), "{name}: {e}");
        assert!(store.check_parameter(name, &v).is_err());
    }
    assert_eq!(shared.lock().unwrap().problem.descent.m_wet, 1905.0);
    assert!(store.set_parameter("controller.no_such", &ParameterValue::Double(1.0)).is_err());
}

#[test]
fn command_line_overrides_apply_on_top_of_the_file() {
    let (path, _) = descent();
    let args = vec!["trc_node".to_string(), "--ros-args".into(), "--params-file".into(), path];
    let mut ov = IndexMap::new();
    ov.insert("sim.episodes".to_string(), ParameterValue::Integer(7));
    ov.insert("use_sim_time".to_string(), ParameterValue::Bool(true));
    ov.insert("bogus".to_string(), ParameterValue::Integer(1));
    let (cfg, unknown) = startup_config(&args, &ov).unwrap();
    assert_eq!(cfg.sim.episodes, 7);
    assert!(cfg.use_sim_time);
    assert_eq!(unknown, vec!["bogus".to_string()]);
    ov.insert("problem.descent.m_dry".to_string(), ParameterValue::Double(5000.0));
    let e = startup_config(&args, &ov).unwrap_err().to_string();
    assert!(e.contains("m_dry"), "an invalid override names the key: {e}");
    let e = startup_config(&["trc_node".to_string()], &IndexMap::new()).unwrap_err().to_string();
    assert!(e.contains("--params-file"), "{e}");
}
