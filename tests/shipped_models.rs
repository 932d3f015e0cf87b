//! The shipped checkpoints in models/ load against the shipped configs, carry a complete model
//! card (command, seed, data hashes, commit, held-out metrics), and produce admissible controls.

use tch::{Device, Kind, Tensor};
use trc_control::config::TrcConfig;
use trc_control::model::checkpoint;
use trc_control::problems::ControlConstraint;

#[test]
fn shipped_models_load_and_are_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    for p in ["double_integrator", "vanderpol", "descent"] {
        let cfg = TrcConfig::from_file(format!("{root}/config/{p}.yaml")).unwrap();
        let stem = std::path::PathBuf::from(format!("{root}/models/{p}"));
        let (_vs, model, card) = checkpoint::load(&stem, Device::Cpu, Some(&cfg.problem)).unwrap_or_else(|e| panic!("{p}: {e}"));
        let prov = &card.provenance;
        assert!(prov.command.contains("trc train"), "{p}: card must record the training command");
        assert!(!prov.train_data.is_empty() && prov.train_data[0].1.len() == 64, "{p}: dataset hash");
        assert!(prov.commit.len() >= 40 && !prov.commit.ends_with("+dirty"), "{p}: trained from a clean commit, got {}", prov.commit);
        for key in ["test_cost_gap_mean", "test_success_rate", "test_success_rate_optimum", "test_samples"] {
            assert!(card.metrics.contains_key(key), "{p}: card lacks held-out metric {key}");
        }
        // admissible controls on a start state drawn from the problem's distribution
        let inst = trc_control::data::sample_instance(&cfg.problem, 99, trc_control::data::Split::Test, 0);
        let x0 = trc_control::tensor::from_dvector(&inst.x0, Device::Cpu).unsqueeze(0);
        let xt = trc_control::tensor::from_dvector(&inst.x_target, Device::Cpu).unsqueeze(0);
        let t_go = Tensor::from_slice(&[model.simulator().problem().default_t_go()]);
        let out = tch::no_grad(|| model.forward_t(&x0, &xt, &t_go, None, card.model.outer, false));
        let u = out.u.last().unwrap().to_kind(Kind::Double);
        assert!(bool::try_from(u.isfinite().all()).unwrap(), "{p}: non-finite control");
        match model.simulator().problem().control_constraint() {
            ControlConstraint::Box { lower, upper } => {
                assert!(f64::try_from(u.min()).unwrap() >= lower[0] - 1e-6 && f64::try_from(u.max()).unwrap() <= upper[0] + 1e-6, "{p}: box violated");
            }
            ControlConstraint::ThrustAnnulusCone { rho_min, rho_max, .. } => {
                let n = u.square().sum_dim_intlist(&[2i64][..], false, Kind::Double).sqrt();
                assert!(
                    f64::try_from(n.min()).unwrap() >= rho_min * (1.0 - 1e-5) && f64::try_from(n.max()).unwrap() <= rho_max * (1.0 + 1e-5),
                    "{p}: thrust bound violated"
                );
            }
        }
    }
}
