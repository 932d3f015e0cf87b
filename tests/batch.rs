//! Batched inference (issue: GPU-resident TRC, "batched CPU inference equals B batch-1 calls to
//! 1e-6"): one [`TrcPolicy::refine_batch`] call over B requests gives what B calls of
//! [`Policy::refine`] give, for the three shipped models, with and without warm starts.

use nalgebra::DMatrix;
use tch::Device;
use trc_control::config::{ProblemConfig, ProblemKind};
use trc_control::control::policy::{PlanRequest, Policy, TrcPolicy};
use trc_control::data::{sample_instance, Split};

/// Largest |u_batched - u_alone| over all requests, relative to the largest |u| of the plans
/// (controls are newtons for descent, O(1) otherwise: a scale-free comparison).
fn batch_vs_alone(kind: ProblemKind, b: u64, warm_every: u64, f64_net: bool) -> f64 {
    let cfg = ProblemConfig::new(kind);
    let stem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(cfg.name.to_string());
    let mut p = TrcPolicy::load(&stem, &cfg, Device::Cpu, None).unwrap();
    if f64_net {
        p.set_kind(tch::Kind::Double);
    }
    let problem = cfg.build().unwrap();
    let mut reqs = Vec::new();
    for i in 0..b {
        let inst = sample_instance(&cfg, 41, Split::Test, i);
        let t_go = inst.t_go.unwrap_or_else(|| problem.default_t_go());
        let mut req = PlanRequest { x0: inst.x0.clone(), x_target: inst.x_target.clone(), t_go, u_warm: None };
        if warm_every > 0 && i % warm_every == 0 {
            // a warm start as the controller gives one: an earlier plan, here the request's own
            let mut last = None;
            p.refine(&req, &mut |it| {
                last = Some(it.u);
                true
            })
            .unwrap();
            req.u_warm = last;
        }
        reqs.push(req);
    }
    let alone: Vec<DMatrix<f64>> = reqs
        .iter()
        .map(|r| {
            let mut last = None;
            p.refine(r, &mut |it| {
                last = Some(it.u);
                true
            })
            .unwrap();
            last.unwrap()
        })
        .collect();
    let batched = p.refine_batch(&reqs).unwrap();
    assert_eq!(batched.len(), reqs.len());
    let scale = alone.iter().map(|u| u.amax()).fold(0.0, f64::max).max(1e-12);
    alone.iter().zip(&batched).map(|(a, b)| (a - b).amax() / scale).fold(0.0, f64::max)
}

/// The shipped descent model as it runs (float32): batched equals alone to 1e-6.
#[test]
fn a_batch_of_descent_requests_gives_what_each_request_alone_gives() {
    let d = batch_vs_alone(ProblemKind::Descent, 16, 0, false);
    assert!(d <= 1e-6, "descent, no warm start: max relative difference {d:e}");
    let d = batch_vs_alone(ProblemKind::Descent, 9, 3, false);
    assert!(d <= 1e-6, "descent, a third warm-started: max relative difference {d:e}");
}

/// Every shipped model with the network in float64: what batching changes is only rounding
/// (float32 matrix products take other kernels at other batch sizes: up to ~4e-6 relative for
/// the double integrator), so in float64 batched and alone agree far below 1e-6.
#[test]
fn a_batch_of_requests_of_every_problem_gives_what_each_alone_gives_in_float64() {
    for kind in [ProblemKind::Descent, ProblemKind::Vanderpol, ProblemKind::DoubleIntegrator] {
        let d = batch_vs_alone(kind, 12, 2, true);
        assert!(d <= 1e-9, "{kind}: max relative difference {d:e}");
    }
}

#[test]
fn a_bad_request_in_a_batch_is_named() {
    let cfg = ProblemConfig::new(ProblemKind::Descent);
    let stem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/descent");
    let mut p = TrcPolicy::load(&stem, &cfg, Device::Cpu, None).unwrap();
    let inst = sample_instance(&cfg, 41, Split::Test, 0);
    let good = PlanRequest { x0: inst.x0.clone(), x_target: inst.x_target.clone(), t_go: 40.0, u_warm: None };
    let bad = PlanRequest { x0: inst.x0.rows(0, 3).into_owned(), ..good.clone() };
    let e = p.refine_batch(&[good.clone(), bad]).unwrap_err().to_string();
    assert!(e.contains("request 1"), "{e}");
    assert!(p.refine_batch(&[]).unwrap().is_empty());
    assert_eq!(p.refine_batch(&[good]).unwrap().len(), 1);
}
