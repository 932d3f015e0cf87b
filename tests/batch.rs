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

/// The accelerator's code path (what CUDA and a CUDA graph run: the batched tensor Gauss-Newton
/// step and acceptance, descent's loop-free rollout and terminal Jacobian), forced on the CPU,
/// refines the shipped descent model's plans as the CPU path does (per-sample f64 step and
/// acceptance, the rollout loop): u^(K) equal to 1e-6 relative with the network in float64, over
/// test states with and without warm starts. This is how CI checks the GPU path's arithmetic
/// without a GPU.
#[test]
fn the_accelerator_code_path_refines_as_the_cpu_path_does() {
    use trc_control::model::checkpoint;
    let cfg = ProblemConfig::new(ProblemKind::Descent);
    let stem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join("descent");
    let (mut vs, mut model, card) = checkpoint::load(&stem, Device::Cpu, Some(&cfg)).unwrap();
    vs.set_kind(tch::Kind::Double);
    let problem = cfg.build().unwrap();
    let _guard = tch::no_grad_guard();
    let rows: Vec<_> = (0..12)
        .map(|i| {
            let inst = sample_instance(&cfg, 43, Split::Test, i);
            let t_go = inst.t_go.unwrap_or_else(|| problem.default_t_go());
            (
                trc_control::tensor::from_dvector(&inst.x0, Device::Cpu).unsqueeze(0),
                trc_control::tensor::from_dvector(&inst.x_target, Device::Cpu).unsqueeze(0),
                tch::Tensor::from_slice(&[t_go]),
            )
        })
        .collect();
    let cat = |j: usize| tch::Tensor::cat(&rows.iter().map(|r| [&r.0, &r.1, &r.2][j]).collect::<Vec<_>>(), 0);
    let (x0, xt, t_go) = (cat(0), cat(1), cat(2));
    let k = card.model.outer;
    let run = |model: &trc_control::model::Trc, warm: Option<&tch::Tensor>| model.forward_t(&x0, &xt, &t_go, warm, k, false).u;
    let cpu = run(&model, None);
    // a warm start as the controller gives one: the plan shifted by one step, last control held
    let u_k = cpu[k as usize].shallow_clone();
    let n = u_k.size()[1];
    let shifted = tch::Tensor::cat(&[u_k.narrow(1, 1, n - 1), u_k.narrow(1, n - 1, 1)], 1);
    let cpu_warm = run(&model, Some(&shifted));
    model.set_device_path(true);
    let dev = run(&model, None);
    let dev_warm = run(&model, Some(&shifted));
    let rel = |a: &tch::Tensor, b: &tch::Tensor| f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap();
    for (i, (a, b)) in cpu.iter().zip(&dev).enumerate() {
        assert!(rel(b, a) <= 1e-6, "u^({i}) without a warm start: accelerator path vs CPU path {:e}", rel(b, a));
    }
    for (i, (a, b)) in cpu_warm.iter().zip(&dev_warm).enumerate() {
        assert!(rel(b, a) <= 1e-6, "u^({i}) warm-started: accelerator path vs CPU path {:e}", rel(b, a));
    }
}

/// The kernels one batch-1 refinement of the shipped descent model (K as trained) launches on an
/// accelerator, counted on the CPU with the op counter (`cuda_graph::count_refinement`;
/// docs/gpu.md "What a GPU will have to launch"): 3,049 on 2026-12-08 with torch 2.11. A GPU's
/// batch-1 latency grows with it at 1.3-2.6 us per kernel even as a CUDA graph, and no GPU times
/// it in CI, so this budget keeps the accelerator path from growing unnoticed. Raising it needs
/// a reason in docs/gpu.md.
#[test]
fn the_accelerator_path_stays_within_its_kernel_budget() {
    use trc_control::model::{checkpoint, cuda_graph::count_refinement};
    const BUDGET: u64 = 3_200;
    let cfg = ProblemConfig::new(ProblemKind::Descent);
    let stem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join("descent");
    let (_vs, mut model, card) = checkpoint::load(&stem, Device::Cpu, Some(&cfg)).unwrap();
    let problem = cfg.build().unwrap();
    let inst = sample_instance(&cfg, 7, Split::Test, 0);
    let t_go = inst.t_go.unwrap_or_else(|| problem.default_t_go());
    let x0 = trc_control::tensor::from_dvector(&inst.x0, Device::Cpu).unsqueeze(0).to_kind(tch::Kind::Float);
    let xt = trc_control::tensor::from_dvector(&inst.x_target, Device::Cpu).unsqueeze(0).to_kind(tch::Kind::Float);
    let tg = tch::Tensor::from_slice(&[t_go as f32]);
    let count = count_refinement(&mut model, &x0, &xt, &tg, card.model.outer, true).unwrap();
    let kernels = count.kernels();
    assert!(kernels > 1_000, "the count saw the refinement: {kernels} kernels, {count:?}");
    assert!(
        kernels <= BUDGET,
        "the accelerator path launches {kernels} kernels per batch-1 refinement (budget {BUDGET}); most frequent: {:?}",
        count.top_kernels(10)
    );
}
