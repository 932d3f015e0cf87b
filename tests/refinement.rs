//! The refinement operator (issue: a convergent refinement operator): the sensitivity features'
//! Jacobian, the Newton-structured decoder, operator-training starts, resumable training.
//! Tiny preset, CPU, no trained weights.

use std::ops::ControlFlow;
use tch::{nn, Device, Kind, Tensor};
use trc_control::config::{ProblemConfig, ProblemKind};
use trc_control::data::{generate, Dataset, GenerateOptions, Split};
use trc_control::model::trc::newton_target;
use trc_control::model::{ModelConfig, Newton, Normalizer, Trc};
use trc_control::problems::Simulator;
use trc_control::train::{self, Starts, Tensors, TrainConfig};

/// libtorch's generator is global to the process and the tests of this file run on parallel
/// threads: each test holds this lock so that what one seeds is what it draws (a race here once
/// changed a seeded perturbation in CI and failed a test that passes alone).
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn dataset(kind: ProblemKind, count: u64, split: Split) -> Dataset {
    let opts = GenerateOptions {
        problem: ProblemConfig::new(kind),
        seed: 5,
        split,
        count,
        shard: (0, 1),
        settings: GenerateOptions::deterministic_settings(),
        progress: false,
    };
    generate(&opts).unwrap().0
}

fn build(kind: ProblemKind, newton: Newton, ds: &Dataset) -> (nn::VarStore, Trc) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = ModelConfig { newton, ..ModelConfig::tiny() };
    let model = Trc::new(&vs.root(), &cfg, &ProblemConfig::new(kind), Normalizer::fit(ds)).unwrap();
    (vs, model)
}

/// Terminal error |e|_2 in tolerance units, per sample.
fn terminal_error(model: &Trc, x: &Tensor, xt: &Tensor) -> Vec<f64> {
    let (idx, scale) = newton_target(model.problem_config()).unwrap();
    let n_steps = x.size()[1] - 1;
    let last = x.select(1, n_steps).to_kind(Kind::Double);
    let xt = xt.to_kind(Kind::Double);
    (0..x.size()[0])
        .map(|b| idx.iter().zip(&scale).map(|(&i, s)| ((last.double_value(&[b, i as i64]) - xt.double_value(&[b, i as i64])) / s).powi(2)).sum::<f64>().sqrt())
        .collect()
}

#[test]
fn terminal_jacobian_f64_path_matches_autodiff() {
    let _rng = serial();
    for kind in [ProblemKind::Descent, ProblemKind::Vanderpol] {
        let ds = dataset(kind, 3, Split::Train);
        let t = Tensors::new(&ds, Device::Cpu);
        let sim = Simulator::new(&ProblemConfig::new(kind)).unwrap();
        let (idx, _) = newton_target(&ProblemConfig::new(kind)).unwrap();
        let dt = &t.t_go / ds.horizon as f64;
        let (x0, u, dt) = (t.x0.to_kind(Kind::Double), t.u_star.to_kind(Kind::Double), dt.to_kind(Kind::Double));
        let fast = sim.terminal_jacobian(&x0, &u, &dt, &idx);
        let auto = sim.terminal_jacobian_autodiff(&x0, &u, &dt, &idx);
        assert_eq!(fast.size(), vec![3, idx.len() as i64, (ds.horizon * ds.m) as i64]);
        let scale = f64::try_from(auto.abs().max()).unwrap();
        let diff = f64::try_from((&fast - &auto).abs().max()).unwrap();
        assert!(scale > 0.0 && diff <= 1e-8 * scale, "{kind:?}: f64 and autodiff Jacobians differ by {diff} (scale {scale})");
    }
}

#[test]
fn per_sample_gauss_newton_matches_the_batched_tensor_form() {
    let _rng = serial();
    // the CPU's per-sample f64 step and the batched tensor form (what a GPU runs) are one step:
    // active set, tangent columns, trust radius, on perturbed optima that push against the
    // thrust bounds and the pointing cone
    let ds = dataset(ProblemKind::Descent, 6, Split::Train);
    let (_vs, model) = build(ProblemKind::Descent, Newton::Corrected, &ds);
    let t = Tensors::new(&ds, Device::Cpu);
    let norm = model.normalizer();
    tch::manual_seed(3);
    for level in [0.02, 0.2, 1.0] {
        let noise = Tensor::randn(t.u_star.size(), (Kind::Float, Device::Cpu)) * level;
        let u = trc_control::model::projection::project(&norm.u_inv(&(norm.u(&t.u_star) + noise)), &model.simulator().problem().control_constraint());
        let fast = tch::no_grad(|| model.newton_features(&t.x0, &t.x_target, &t.t_go, &u, true));
        let batched = tch::no_grad(|| model.newton_features(&t.x0, &t.x_target, &t.t_go, &u, false));
        let scale = f64::try_from(batched.abs().max()).unwrap();
        let diff = f64::try_from((&fast - &batched).abs().max()).unwrap();
        assert!(scale > 1e-3, "level {level}: a step to compare ({scale})");
        assert!(diff <= 1e-3 * scale.max(1.0), "level {level}: per-sample and batched steps differ by {diff} (scale {scale})");
    }
}

#[test]
fn newton_step_decoder_lands_perturbed_plans_and_keeps_the_optimum() {
    let _rng = serial();
    // untrained weights: the free decoder is zero at initialisation, so the operator is the
    // trust-limited Gauss-Newton step; it must take a perturbed optimum to the landing tolerance
    // within a few iterations, and leave u* (which lands) where it is
    let ds = dataset(ProblemKind::Descent, 4, Split::Train);
    let (_vs, model) = build(ProblemKind::Descent, Newton::Step, &ds);
    let t = Tensors::new(&ds, Device::Cpu);
    let norm = model.normalizer();
    let noise = Tensor::randn(t.u_star.size(), (Kind::Float, Device::Cpu)) * 0.05;
    let start = norm.u_inv(&(norm.u(&t.u_star) + noise));
    let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, Some(&start), 4, false));
    let e0 = terminal_error(&model, &out.x[0], &t.x_target);
    let e4 = terminal_error(&model, &out.x[4], &t.x_target);
    for (a, b) in e0.iter().zip(&e4) {
        assert!(*a > 1.0, "the perturbation must miss the tolerance ({a})");
        assert!(*b < 0.5, "4 Gauss-Newton iterations leave |e| = {b} (from {a})");
    }
    let fixed = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, Some(&t.u_star), 2, false));
    let moved = f64::try_from((norm.u(&fixed.u[2]) - norm.u(&t.u_star)).abs().max()).unwrap();
    assert!(moved < 1e-2, "u* moved by {moved} (normalised units)");
}

#[test]
fn every_newton_mode_builds_and_keeps_iterates_admissible() {
    let _rng = serial();
    for kind in [ProblemKind::Descent, ProblemKind::Vanderpol, ProblemKind::DoubleIntegrator] {
        let ds = dataset(kind, 2, Split::Train);
        for newton in [Newton::Off, Newton::Input, Newton::Step, Newton::Corrected] {
            let (_vs, model) = build(kind, newton, &ds);
            let t = Tensors::new(&ds, Device::Cpu);
            let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, None, 3, false));
            assert_eq!(out.u.len(), 4);
            for u in &out.u {
                assert!(bool::try_from(u.isfinite().all()).unwrap(), "{kind:?} {newton:?}: non-finite iterate");
            }
        }
    }
    assert_eq!(Newton::parse("step").unwrap(), Newton::Step);
    assert_eq!(Newton::parse("corrected").unwrap(), Newton::Corrected);
    assert!(Newton::parse("newton").is_err());
}

#[test]
fn operator_training_starts_mix_the_kinds_and_keep_shapes() {
    let _rng = serial();
    let ds = dataset(ProblemKind::Vanderpol, 8, Split::Train);
    let (_vs, model) = build(ProblemKind::Vanderpol, Newton::Input, &ds);
    let t = Tensors::new(&ds, Device::Cpu);
    let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
    let starts = Starts::new(&t);
    let guess = model.initial_guess(&t.x0, &t.x_target, &t.t_go);
    let off = starts.sample(&model, &t, &idx, &TrainConfig::default());
    assert!(off.equal(&guess), "start_mix = 0 starts every chain at the InitialDecoder");
    tch::manual_seed(1);
    let mixed = starts.sample(&model, &t, &idx, &TrainConfig { start_mix: 1.0, ..TrainConfig::default() });
    assert_eq!(mixed.size(), guess.size());
    assert!(bool::try_from(mixed.isfinite().all()).unwrap());
    let same_as_guess = (0..8).filter(|&i| mixed.get(i).equal(&guess.get(i))).count();
    assert_eq!(same_as_guess, 0, "start_mix = 1 starts no chain at the InitialDecoder");
}

#[test]
fn training_resumes_where_it_stopped() {
    let _rng = serial();
    let tr = dataset(ProblemKind::Vanderpol, 24, Split::Train);
    let va = dataset(ProblemKind::Vanderpol, 8, Split::Val);
    let (vs, model) = build(ProblemKind::Vanderpol, Newton::Input, &tr);
    let (ttr, tva) = (Tensors::new(&tr, Device::Cpu), Tensors::new(&va, Device::Cpu));
    let cfg = TrainConfig { epochs: 4, batch_size: 8, warmup_steps: 1, outer_max: 3, start_mix: 0.5, truncate: true, ..TrainConfig::default() };
    let mut saved = None;
    // stopped by the caller after epoch 2 (a wall-time budget, `trc train --budget-s`)
    let log = train::train(
        &model,
        &vs,
        &ttr,
        &tva,
        &cfg,
        false,
        None,
        |_, _, _| {},
        |s, _| {
            saved = Some(s.clone());
            if s.epoch == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    let state = saved.expect("a resume point after every epoch");
    assert_eq!((log.len(), state.epoch, state.step), (2, 2, 6));
    let log = train::train(&model, &vs, &ttr, &tva, &cfg, false, Some(state), |_, _, _| {}, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(log.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(log.iter().all(|e| e.wall_s > 0.0 && e.val_loss.is_finite()));
}

#[test]
fn cost_newton_step_reaches_the_optimum_of_quadratic_problems() {
    let _rng = serial();
    // untrained weights, Newton-structured decoder: the operator is the Gauss-Newton step on the
    // quadratic cost, which reaches the optimal cost
    for (kind, k, tol) in [(ProblemKind::DoubleIntegrator, 10, 2e-2), (ProblemKind::Vanderpol, 6, 1e-2)] {
        // the perturbation below is drawn from libtorch's global generator: seeded, and `serial()`
        // keeps the other tests of this file from drawing in between (seeded but unlocked, a
        // parallel test's draws changed it and it reached 1 of 6 in one CI run)
        tch::manual_seed(7);
        let ds = dataset(kind, 6, Split::Train);
        let (_vs, model) = build(kind, Newton::Step, &ds);
        let t = Tensors::new(&ds, Device::Cpu);
        // the double integrator from the untrained InitialDecoder's guess (linear-quadratic: the
        // step is exact up to the box); Van der Pol (nonlinear) from a perturbed optimum
        let norm = model.normalizer();
        let start =
            (kind == ProblemKind::Vanderpol).then(|| norm.u_inv(&(norm.u(&t.u_star) + Tensor::randn(t.u_star.size(), (Kind::Float, Device::Cpu)) * 0.2)));
        let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, start.as_ref(), k, false));
        let p = model.simulator().problem();
        let j = |x: &Tensor, u: &Tensor| Vec::<f64>::try_from(p.cost_batch(x, u, &t.x_target, &out.dt).to_kind(Kind::Double)).unwrap();
        let x_star = model.simulator().rollout(&t.x0, &t.u_star, &out.dt);
        let (j0, jk, js) = (j(&out.x[0], &out.u[0]), j(&out.x[k as usize], &out.u[k as usize]), j(&x_star, &t.u_star));
        // every step is taken only if it lowers J (f32 round-off aside)
        for w in 1..=k as usize {
            let (prev, cur) = (j(&out.x[w - 1], &out.u[w - 1]), j(&out.x[w], &out.u[w]));
            for i in 0..6 {
                assert!(cur[i] <= prev[i] * (1.0 + 1e-5), "{kind:?} sample {i}: step {w} raised J from {} to {}", prev[i], cur[i]);
            }
        }
        let mut reached = 0;
        for i in 0..6 {
            eprintln!("{kind:?} {i}: J^(0) {:.4} J^({k}) {:.4} J* {:.4}", j0[i], jk[i], js[i]);
            reached += usize::from(jk[i] <= js[i] * (1.0 + tol) + 1e-9);
        }
        // Van der Pol: the projected Gauss-Newton step with a line search stalled on hard
        // instances (3 of these 6 reached J*, the others stopped 0.1-8% above); the damped
        // (Levenberg-Marquardt) step the features use now reaches it on all 6
        assert_eq!(reached, 6, "{kind:?}: {reached} of 6 within {tol} of J*");
    }
}

#[test]
fn monotone_acceptance_never_raises_the_merit_or_the_terminal_error() {
    let _rng = serial();
    // a `corrected` operator whose learned move is random (the residual decoder's zero-initialised
    // output layer filled with noise): alone it wanders; with the acceptance every iterate keeps or
    // lowers the merit (fuel over the previous fuel + landing term) and the terminal error
    let ds = dataset(ProblemKind::Descent, 6, Split::Train);
    let t = Tensors::new(&ds, Device::Cpu);
    let lw = trc_control::model::trc::ACCEPT_LANDING_WEIGHT;
    let slack = trc_control::model::trc::ACCEPT_ERROR_SLACK;
    let mut rises = [0usize; 2];
    for (a, accept) in [false, true].into_iter().enumerate() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig { newton: Newton::Corrected, accept, ..ModelConfig::tiny() };
        let model = Trc::new(&vs.root(), &cfg, &ProblemConfig::new(ProblemKind::Descent), Normalizer::fit(&ds)).unwrap();
        tch::manual_seed(11);
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                if name.starts_with("residual_decoder.fc2") {
                    v.copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.3));
                }
            }
        });
        let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, None, 5, false));
        let sim = model.simulator();
        for b in 0..ds.len() {
            let x0 = nalgebra::DVector::from_row_slice(&ds.x0[b * ds.n..(b + 1) * ds.n]);
            let xt = nalgebra::DVector::from_row_slice(&ds.x_target[b * ds.n..(b + 1) * ds.n]);
            let dt = ds.t_go[b] / ds.horizon as f64;
            let score: Vec<(f64, f64, f64)> = out
                .u
                .iter()
                .map(|u| {
                    let u: Vec<f64> = Vec::try_from(u.get(b as i64).to_kind(Kind::Double).contiguous().view([-1])).unwrap();
                    let u = nalgebra::DMatrix::from_row_slice(ds.horizon, ds.m, &u);
                    let x = sim.rollout_one(&x0, &u, dt).unwrap();
                    let last = x.row(ds.horizon);
                    let fuel: f64 = u.row_iter().map(|r| r.norm()).sum::<f64>() * dt;
                    let d2: f64 = (0..6).map(|c| (last[c] - xt[c]).powi(2)).sum();
                    let e = ((0..3).map(|c| (last[c] - xt[c]).powi(2)).sum::<f64>() + (3..6).map(|c| ((last[c] - xt[c]) / 0.5).powi(2)).sum::<f64>()).sqrt();
                    (fuel, d2, e)
                })
                .collect();
            for k in 1..score.len() {
                let ((f0, d0, e0), (f1, d1, e1)) = (score[k - 1], score[k]);
                let merit_rose = f1 / f0 + lw * d1 > 1.0 + lw * d0 + 1e-9 * (1.0 + lw * d0);
                let error_rose = e1 > e0 + slack + 1e-9 * (1.0 + e0);
                rises[a] += (merit_rose || error_rose) as usize;
                if accept {
                    assert!(!merit_rose && !error_rose, "sample {b}, k = {k}: merit {} -> {}, error {e0} -> {e1}", 1.0 + lw * d0, f1 / f0 + lw * d1);
                }
            }
        }
    }
    assert!(rises[0] > 0, "the random move alone should raise the merit or the error somewhere (else this test checks nothing)");
    assert_eq!(rises[1], 0);
}

/// Sets the ResidualDecoder's output layer of an untrained model to seeded random weights, so that
/// its learned move is a random one (the acceptance tests).
fn randomize_learned_move(vs: &nn::VarStore) {
    tch::manual_seed(11);
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if name.starts_with("residual_decoder.fc2") {
                v.copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.3));
            }
        }
    });
}

/// `(J, terminal error)` of every iterate `us[k]` `[B, N, m]` of Van der Pol sample `b`, the error
/// in the model's units (the state error over the success radius).
fn vanderpol_chain_scores(ds: &Dataset, problem: &ProblemConfig, us: &[Tensor], b: usize) -> Vec<(f64, f64)> {
    let p = problem.build().unwrap();
    let x0 = nalgebra::DVector::from_row_slice(&ds.x0[b * ds.n..(b + 1) * ds.n]);
    let xt = nalgebra::DVector::from_row_slice(&ds.x_target[b * ds.n..(b + 1) * ds.n]);
    let dt = ds.t_go[b] / ds.horizon as f64;
    us.iter()
        .map(|u| {
            let u: Vec<f64> = Vec::try_from(u.get(b as i64).to_kind(Kind::Double).contiguous().view([-1])).unwrap();
            let u = nalgebra::DMatrix::from_row_slice(ds.horizon, ds.m, &u);
            let x = p.rollout(&x0, &u, dt).unwrap();
            let e = (x.row(ds.horizon).transpose() - &xt).norm() / problem.vanderpol.success_radius;
            (p.cost(&x, &u, &xt, dt), e)
        })
        .collect()
}

#[test]
fn acceptance_of_an_off_model_keeps_cost_and_terminal_error_non_increasing() {
    let _rng = serial();
    // Van der Pol, `off` (the learned iterate is the only candidate): an untrained network's
    // moves raise J somewhere; with the acceptance neither J (the problem's cost) nor the terminal
    // error rises over k, since the iterate only moves where both hold
    let ds = dataset(ProblemKind::Vanderpol, 6, Split::Train);
    let t = Tensors::new(&ds, Device::Cpu);
    let slack = trc_control::model::trc::ACCEPT_ERROR_SLACK;
    let problem = ProblemConfig::new(ProblemKind::Vanderpol);
    let mut rises = [0usize; 2];
    for (a, accept) in [false, true].into_iter().enumerate() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig { accept, ..ModelConfig::tiny() };
        let model = Trc::new(&vs.root(), &cfg, &problem, Normalizer::fit(&ds)).unwrap();
        randomize_learned_move(&vs);
        let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, None, 6, false));
        for b in 0..ds.len() {
            let score = vanderpol_chain_scores(&ds, &problem, &out.u, b);
            for k in 1..score.len() {
                let ((j0, e0), (j1, e1)) = (score[k - 1], score[k]);
                let rose = j1 > j0 * (1.0 + 1e-6) + 1e-9 || e1 > e0 + slack + 1e-6 * (1.0 + e0);
                rises[a] += rose as usize;
                if accept {
                    assert!(!rose, "sample {b}, k = {k}: J {j0} -> {j1}, error {e0} -> {e1}");
                }
            }
        }
    }
    assert!(rises[0] > 0, "the random move alone should raise J or the error somewhere (else this test checks nothing)");
    assert_eq!(rises[1], 0);
}

#[test]
fn joint_acceptance_of_a_corrected_model_holds_cost_and_terminal_error() {
    let _rng = serial();
    // Van der Pol, `corrected` with the acceptance (ModelConfig::joint_monotone): an untrained
    // network's moves; with the joint acceptance neither J nor the terminal error rises over k
    // (the error-holding step is the fallback where neither candidate passes), and the chain
    // still lowers J
    let ds = dataset(ProblemKind::Vanderpol, 6, Split::Train);
    let t = Tensors::new(&ds, Device::Cpu);
    let slack = trc_control::model::trc::ACCEPT_ERROR_SLACK;
    let problem = ProblemConfig::new(ProblemKind::Vanderpol);
    let mut rises_without = 0;
    for joint in [false, true] {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig { accept: true, joint_monotone: joint, newton: Newton::Corrected, ..ModelConfig::tiny() };
        let model = Trc::new(&vs.root(), &cfg, &problem, Normalizer::fit(&ds)).unwrap();
        randomize_learned_move(&vs);
        let out = tch::no_grad(|| model.forward_t(&t.x0, &t.x_target, &t.t_go, None, 6, false));
        let (mut error_rises, mut lowered) = (0usize, 0usize);
        for b in 0..ds.len() {
            let score = vanderpol_chain_scores(&ds, &problem, &out.u, b);
            for k in 1..score.len() {
                let ((j0, e0), (j1, e1)) = (score[k - 1], score[k]);
                assert!(j1 <= j0 * (1.0 + 1e-6) + 1e-9, "joint {joint}, sample {b}, k = {k}: J {j0} -> {j1}");
                let rose = e1 > e0 + slack + 1e-6 * (1.0 + e0);
                error_rises += rose as usize;
                if joint {
                    assert!(!rose, "sample {b}, k = {k}: error {e0} -> {e1}");
                }
            }
            lowered += usize::from(score[score.len() - 1].0 < 0.9 * score[0].0);
        }
        eprintln!("joint {joint}: terminal error rose {error_rises} times; J fell by 10% or more on {lowered} of {}", ds.len());
        assert_eq!(lowered, ds.len(), "joint {joint}: the chain should still lower J on every sample");
        if !joint {
            rises_without = error_rises;
        }
    }
    assert!(rises_without > 0, "without the joint acceptance the terminal error should rise somewhere (else this test checks nothing)");
}

#[test]
fn levenberg_marquardt_cost_refinement_reaches_the_optimum_and_never_raises_j() {
    // the classical refinement after the network for quadratic costs (controller.cost_refinement_steps):
    // from optima perturbed by a smooth offset (Van der Pol) and from zero controls (the double
    // integrator), 10 steps reach J* within 1% and every step lowers J
    use nalgebra::{DMatrix, DVector};
    use trc_control::problems::cost_gauss_newton_refine;
    for kind in [ProblemKind::Vanderpol, ProblemKind::DoubleIntegrator] {
        let ds = dataset(kind, 6, Split::Train);
        let p = ProblemConfig::new(kind).build().unwrap();
        let (n, m, nn) = (ds.n, ds.m, ds.horizon);
        let mut reached = 0;
        for i in 0..ds.len() {
            let x0 = DVector::from_row_slice(&ds.x0[i * n..(i + 1) * n]);
            let xt = DVector::from_row_slice(&ds.x_target[i * n..(i + 1) * n]);
            let dt = ds.t_go[i] / nn as f64;
            let u_star = DMatrix::from_row_slice(nn, m, &ds.u[i * nn * m..(i + 1) * nn * m]);
            let j = |u: &DMatrix<f64>| p.cost(&p.rollout(&x0, u, dt).unwrap(), u, &xt, dt);
            let start = match kind {
                ProblemKind::Vanderpol => DMatrix::from_fn(nn, m, |k, _| (u_star[(k, 0)] + 0.5 * (k as f64 * 0.13 + i as f64).sin()).clamp(-2.0, 2.0)),
                _ => DMatrix::zeros(nn, m),
            };
            let mut prev = j(&start);
            let mut u = start.clone();
            for step in 0..10 {
                let (next, taken) = cost_gauss_newton_refine(p.as_ref(), &x0, &u, dt, &xt, 1, None).unwrap();
                let jn = j(&next);
                assert!(jn <= prev, "{kind:?} {i}: step {step} raised J from {prev} to {jn}");
                if taken == 0 {
                    assert_eq!(next, u, "no step taken: the controls are returned unchanged");
                    break;
                }
                (u, prev) = (next, jn);
            }
            // one call of 10 steps (its damping carried from step to step, as the controller runs it)
            let (all, _) = cost_gauss_newton_refine(p.as_ref(), &x0, &start, dt, &xt, 10, None).unwrap();
            assert!(all.iter().all(|v| v.abs() <= 2.0 + 1e-12 || kind != ProblemKind::Vanderpol), "inside the box");
            eprintln!("{kind:?} {i}: J^(0) {:.4} -> {:.4} (single steps {:.4}), J* {:.4}", j(&start), j(&all), prev, j(&u_star));
            reached += usize::from(j(&all) <= j(&u_star) * 1.01 + 1e-9);
        }
        assert_eq!(reached, ds.len(), "{kind:?}: {reached} of {} within 1% of J*", ds.len());
    }
}

#[test]
fn error_held_cost_step_lowers_j_without_raising_the_terminal_error() {
    // the further candidate of the joint monotone acceptance (ModelConfig::joint_monotone): one
    // Levenberg-Marquardt step on the cost whose linearised terminal state moves only toward the
    // target. Chained from perturbed optima and from zero controls, no step raises J or the
    // terminal error (beyond the slack), and the chain still closes most of the cost gap
    use nalgebra::{DMatrix, DVector};
    use trc_control::problems::cost_lm_step_error_held;
    let slack = 5e-4;
    for kind in [ProblemKind::Vanderpol, ProblemKind::DoubleIntegrator] {
        let ds = dataset(kind, 6, Split::Train);
        let cfg = ProblemConfig::new(kind);
        let p = cfg.build().unwrap();
        let (idx, scale) = newton_target(&cfg).unwrap();
        let (n, m, nn) = (ds.n, ds.m, ds.horizon);
        let mut closed = 0;
        for i in 0..ds.len() {
            let x0 = DVector::from_row_slice(&ds.x0[i * n..(i + 1) * n]);
            let xt = DVector::from_row_slice(&ds.x_target[i * n..(i + 1) * n]);
            let dt = ds.t_go[i] / nn as f64;
            let u_star = DMatrix::from_row_slice(nn, m, &ds.u[i * nn * m..(i + 1) * nn * m]);
            let score = |u: &DMatrix<f64>| {
                let x = p.rollout(&x0, u, dt).unwrap();
                let e = idx.iter().zip(&scale).map(|(&c, s)| ((x[(nn, c)] - xt[c]) / s).powi(2)).sum::<f64>().sqrt();
                (p.cost(&x, u, &xt, dt), e)
            };
            let start = match kind {
                ProblemKind::Vanderpol => DMatrix::from_fn(nn, m, |k, _| (u_star[(k, 0)] + 0.5 * (k as f64 * 0.13 + i as f64).sin()).clamp(-2.0, 2.0)),
                _ => DMatrix::zeros(nn, m),
            };
            let (j_star, e_star) = score(&u_star);
            let (j0, e0) = score(&start);
            let (mut u, mut prev) = (start.clone(), (j0, e0));
            let mut taken = 0;
            for step in 0..20 {
                let Some(next) = cost_lm_step_error_held(p.as_ref(), &x0, &u, dt, &xt, &idx, &scale, slack).unwrap() else { break };
                let (j, e) = score(&next);
                assert!(j < prev.0, "{kind:?} {i}: step {step} raised J from {} to {j}", prev.0);
                assert!(e <= prev.1 + slack, "{kind:?} {i}: step {step} raised the terminal error from {} to {e}", prev.1);
                (u, prev, taken) = (next, (j, e), taken + 1);
            }
            eprintln!("{kind:?} {i}: J {j0:.4} -> {:.4} (J* {j_star:.4}), error {e0:.4} -> {:.4} (optimum {e_star:.4}), {taken} steps", prev.0, prev.1);
            assert!(taken > 0, "{kind:?} {i}: no step found from a point {:.1}% above J*", 100.0 * (j0 / j_star - 1.0));
            let left = (prev.0 - j_star) / (j0 - j_star).max(1e-12);
            closed += usize::from(left <= 0.1);
            assert!(left <= 0.5, "{kind:?} {i}: J {j0} -> {} leaves {:.0}% of the gap to J* {j_star}", prev.0, 100.0 * left);
        }
        // it can stall short of J*: where the box clips the step, or once the error is below
        // the optimum's (the step cannot raise it again; docs/refinement-log.md)
        assert!(closed * 2 >= ds.len(), "{kind:?}: 20 steps close 90% of the gap on only {closed} of {} instances", ds.len());
    }
}
