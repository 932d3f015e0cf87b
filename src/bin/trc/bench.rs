//! `trc bench ...`: benchmark commands. Each writes a markdown fragment under `bench/`;
//! `trc bench report` assembles them into BENCHMARKS.md. Numbers are measured, never typed in.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use trc_control::closed_loop::percentile;

use rayon::prelude::*;
use trc_control::config::{ProblemConfig, ProblemKind};
use trc_control::data::{generate, sample_instance, GenerateOptions, Split};
use trc_control::model::checkpoint;
use trc_control::problems::PoweredDescent;
use trc_control::solvers::lcvx::{LcvxSolver, TfSearch};
use trc_control::solvers::{for_problem, Instance, OcpSolver, SolverSettings};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn header(title: &str, command: &str) -> String {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    format!(
        "## {title}\n\nCommand: `{command}` ({profile} build, {} cores, rayon {} threads).\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        rayon::current_num_threads()
    )
}

pub(crate) fn write_out(out: &Path, text: &str) -> AnyResult<()> {
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(out, text)?;
    log::info!("wrote {}", out.display());
    Ok(())
}

/// Solver solve times, iterations, LCvx losslessness, re-simulation error and fuel vs t_f.
pub fn solvers(out: &Path, instances: u64, lossless_samples: u64, seed: u64) -> AnyResult<()> {
    let settings = SolverSettings::default();
    let mut md = header("Optimal-control solvers", &format!("trc bench solvers --instances {instances} --lossless-samples {lossless_samples} --seed {seed}"));
    md.push_str("Instances: the test split of the seed (distributions in `src/data/sampling.rs`), solved one at a time on one thread.\n\n");
    md.push_str("| problem | solver | solved | solve p50 [ms] | solve p99 [ms] | iterations (mean) | convex subproblems (mean) | success after RK4 re-simulation |\n|---|---|---|---|---|---|---|---|\n");
    for kind in [ProblemKind::DoubleIntegrator, ProblemKind::Vanderpol, ProblemKind::Descent] {
        let cfg = ProblemConfig::new(kind);
        let problem = cfg.build()?;
        let mut solver = for_problem(&cfg, settings.clone())?;
        let (mut times, mut iters, mut subs, mut ok, mut solved) = (Vec::new(), 0.0, 0.0, 0, 0);
        for i in 0..instances {
            let inst = sample_instance(&cfg, seed, Split::Test, i);
            if let Ok(sol) = solver.solve(&inst) {
                solved += 1;
                times.push(sol.solve_time.as_secs_f64() * 1e3);
                iters += sol.iterations as f64;
                subs += sol.subproblems as f64;
                let last = sol.x.row(sol.x.nrows() - 1).transpose();
                ok += problem.is_success(&last, &inst.x_target) as usize;
            }
        }
        let name = match kind {
            ProblemKind::DoubleIntegrator => "box QP (Clarabel)",
            ProblemKind::Vanderpol => "SCP, trust region (QPs on Clarabel)",
            ProblemKind::Descent => "LCvx SOCP + t_f search (Clarabel)",
        };
        let s = solved.max(1) as f64;
        let _ = writeln!(
            md,
            "| {kind} | {name} | {solved}/{instances} | {:.2} | {:.2} | {:.1} | {:.1} | {ok}/{solved} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            iters / s,
            subs / s
        );
        log::info!("{kind}: {solved}/{instances} solved, p50 {:.2} ms", percentile(&times, 0.5));
    }

    // One LCvx cone solve at the optimal t_f vs the full t_f search, same instances.
    let cfg = ProblemConfig::new(ProblemKind::Descent);
    let p = PoweredDescent::new(cfg.descent.clone())?;
    let mut lcvx = LcvxSolver::new(p.clone(), settings.clone(), TfSearch::default())?;
    let (mut one, mut search) = (Vec::new(), Vec::new());
    for i in 0..instances {
        let inst = sample_instance(&cfg, seed, Split::Test, i);
        let t0 = Instant::now();
        let Ok(sol) = lcvx.solve(&inst) else { continue };
        search.push(t0.elapsed().as_secs_f64() * 1e3);
        let fixed = Instance { t_go: Some(sol.t_go), ..inst };
        let t1 = Instant::now();
        if lcvx.solve(&fixed).is_ok() {
            one.push(t1.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _ = writeln!(md, "\nLCvx on the same {} descent instances: one cone solve at the optimal t_f p50 {:.2} ms / p99 {:.2} ms; with the t_f search p50 {:.2} ms / p99 {:.2} ms.\n", one.len(), percentile(&one, 0.5), percentile(&one, 0.99), percentile(&search, 0.5), percentile(&search, 0.99));

    // Losslessness and re-simulation over many instances (parallel).
    let t0 = Instant::now();
    let results: Vec<_> = (0..lossless_samples)
        .into_par_iter()
        .map_init(
            || LcvxSolver::new(p.clone(), settings.clone(), TfSearch::default()).expect("valid settings"),
            |s, i| {
                let inst = sample_instance(&cfg, seed, Split::Test, 10_000 + i);
                s.solve_detailed(&inst).map(|(sol, rep)| (sol.t_go, rep)).map_err(|e| e.to_string())
            },
        )
        .collect();
    let solved: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let lossy_rejected = results.iter().filter(|r| r.as_ref().is_err_and(|e| e.contains("not lossless"))).count();
    let with_lossy_tf = solved.iter().filter(|(_, r)| r.lossy_evaluations > 0).count();
    let lossless = solved.iter().filter(|(_, r)| r.lossless_gap < 1e-5).count();
    let worst_gap = solved.iter().map(|(_, r)| r.lossless_gap).fold(0.0, f64::max);
    let pos: Vec<f64> = solved.iter().map(|(_, r)| r.resim_position_error).collect();
    let vel: Vec<f64> = solved.iter().map(|(_, r)| r.resim_velocity_error).collect();
    let land = solved.iter().filter(|(_, r)| r.resim_position_error < 1.0 && r.resim_velocity_error < 0.5).count();
    let _ = writeln!(
        md,
        "LCvx losslessness over {lossless_samples} descent instances ({:.0} s on {} threads): {} solved, {} infeasible (of which {lossy_rejected} only because every relaxed solution found was lossy). Solutions returned are lossless (|u| = sigma within 1e-5 relative) on {lossless}/{} = {:.1}% (worst gap {worst_gap:.1e}); the t_f search rejected a lossy relaxed solution at some t_f in {with_lossy_tf} of them (the relaxation is not always tight at every t_f in discrete time).\n",
        t0.elapsed().as_secs_f64(), rayon::current_num_threads(), solved.len(), results.len() - solved.len(), solved.len(), 100.0 * lossless as f64 / solved.len().max(1) as f64
    );
    let _ = writeln!(
        md,
        "Discretisation gap: the LCvx model holds u = T/m per step, the RK4 plant holds the thrust T. Re-simulating the optimal thrust open loop through the plant lands with position error p50 {:.2} m / p99 {:.2} m and velocity error p50 {:.3} / p99 {:.3} m/s; {land}/{} ({:.1}%) meet the landing criterion (1 m, 0.5 m/s) open loop.\n",
        percentile(&pos, 0.5), percentile(&pos, 0.99), percentile(&vel, 0.5), percentile(&vel, 0.99), solved.len(), 100.0 * land as f64 / solved.len().max(1) as f64
    );

    // Fuel as a function of t_f around the optimum, one instance.
    let inst = sample_instance(&cfg, seed, Split::Test, 0);
    if let Ok((sol, _)) = lcvx.solve_detailed(&inst) {
        let _ = writeln!(md, "Fuel vs t_f around the optimum (test instance 0, t_f* = {:.2} s):\n\n| t_f [s] | fuel [kg] |\n|---|---|", sol.t_go);
        for dt in [-6.0, -3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0, 6.0] {
            let t = sol.t_go + dt;
            let fuel = lcvx
                .solve(&Instance { t_go: Some(t), ..inst.clone() })
                .map(|s| format!("{:.3}", inst.x0[6] - s.x_model[(s.x_model.nrows() - 1, 6)]))
                .unwrap_or_else(|_| "infeasible".into());
            let _ = writeln!(md, "| {t:.2} | {fuel} |");
        }
        md.push('\n');
    }
    write_out(out, &md)
}

/// Dataset generation wall time for `count` descent and Van der Pol demonstrations.
pub fn datasets(out: &Path, count: u64, data_dir: &Path) -> AnyResult<()> {
    let mut md = header("Dataset generation", &format!("trc bench datasets --count {count}"));
    md.push_str("| problem | requested | solved | dropped | wall [s] | solve p50 [ms] | solve p99 [ms] |\n|---|---|---|---|---|---|---|\n");
    for kind in [ProblemKind::Descent, ProblemKind::Vanderpol] {
        let opts = GenerateOptions {
            problem: ProblemConfig::new(kind),
            seed: 1,
            split: Split::Train,
            count,
            shard: (0, 1),
            settings: GenerateOptions::deterministic_settings(),
            progress: true,
        };
        let (ds, rep) = generate(&opts)?;
        let path = data_dir.join(format!("{kind}_train_{count}.safetensors"));
        ds.save(&path)?;
        let _ = writeln!(
            md,
            "| {kind} | {count} | {} | {} | {:.1} | {:.1} | {:.1} |",
            rep.solved,
            rep.dropped.len(),
            rep.wall_s,
            percentile(&rep.solve_ms, 0.5),
            percentile(&rep.solve_ms, 0.99)
        );
        log::info!("{kind}: {} solved in {:.1} s -> {}", rep.solved, rep.wall_s, path.display());
    }
    write_out(out, &md)
}

/// Batch-1 TRC latency vs LCvx on the same descent instances; the network on `device` (`auto`,
/// `cpu`, `cuda`).
#[allow(clippy::too_many_arguments)]
/// The model a latency bench times: the checkpoint `stem`, or the `preset` architecture (with
/// `newton` features) with random weights when there is none; with its card and a label.
fn timed_model(
    stem: Option<&Path>,
    preset: &str,
    newton: &str,
    dev: tch::Device,
) -> AnyResult<(tch::nn::VarStore, trc_control::model::Trc, checkpoint::ModelCard, String)> {
    Ok(match stem {
        Some(stem) => {
            let card = trc_control::model::checkpoint::read_card(stem)?;
            let cfg = card.problem.clone();
            let (vs, model, card) = trc_control::model::checkpoint::load(stem, dev, Some(&cfg))?;
            (vs, model, card, format!("`{}`", stem.display()))
        }
        None => {
            // Random weights of the preset: the latency of the architecture, not of a trained model.
            let cfg = ProblemConfig::new(ProblemKind::Descent);
            let norm_ds = generate(&GenerateOptions {
                problem: cfg.clone(),
                seed: 7,
                split: Split::Val,
                count: 8,
                shard: (0, 1),
                settings: GenerateOptions::deterministic_settings(),
                progress: false,
            })?
            .0;
            let mcfg =
                trc_control::model::ModelConfig { newton: trc_control::model::Newton::parse(newton)?, ..trc_control::model::ModelConfig::preset(preset)? };
            let vs = tch::nn::VarStore::new(dev);
            let norm = trc_control::model::Normalizer::fit(&norm_ds);
            let model = trc_control::model::Trc::new(&vs.root(), &mcfg, &cfg, norm.clone())?;
            let card = checkpoint::ModelCard::untrained(cfg, mcfg, norm, &vs);
            (vs, model, card, format!("the `{preset}` preset (newton = {newton}) with random weights (latency only, not a trained model)"))
        }
    })
}

pub fn inference(stem: Option<&Path>, preset: &str, newton: &str, out: &Path, instances: u64, reps: usize, device: &str) -> AnyResult<()> {
    let dev = crate::learn::device(device)?;
    let (_vs, mut model, card, label) = timed_model(stem, preset, newton, dev)?;
    let cfg = card.problem.clone();
    let p = PoweredDescent::new(cfg.descent.clone())?;
    let mut lcvx = LcvxSolver::new(p, SolverSettings::default(), TfSearch::default())?;
    let k = card.model.outer;
    let (mut trc, mut one, mut search) = (Vec::new(), Vec::new(), Vec::new());
    let (mut trc3, mut trc_tc) = (Vec::new(), Vec::new());
    let problem = cfg.build()?;
    let horizon = problem.horizon() as f64;
    let corrector = trc_control::control::correction::TerminalCorrector::new(&cfg, Default::default())?;
    let _guard = tch::no_grad_guard();
    for i in 0..instances {
        let inst = sample_instance(&cfg, 7, Split::Test, i);
        let t0 = Instant::now();
        let Ok(sol) = lcvx.solve(&inst) else { continue };
        search.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        if lcvx.solve(&Instance { t_go: Some(sol.t_go), ..inst.clone() }).is_ok() {
            one.push(t1.elapsed().as_secs_f64() * 1e3);
        }
        let x0 = trc_control::tensor::from_dvector(&inst.x0, tch::Device::Cpu).unsqueeze(0).to_kind(tch::Kind::Float);
        let xt = trc_control::tensor::from_dvector(&inst.x_target, tch::Device::Cpu).unsqueeze(0).to_kind(tch::Kind::Float);
        let tg = tch::Tensor::from_slice(&[sol.t_go as f32]);
        let _ = model.forward_t(&x0, &xt, &tg, None, k, false); // warm-up
        for _ in 0..reps {
            let t = Instant::now();
            let o = model.forward_t(&x0, &xt, &tg, None, k, false);
            let _ = o.u[k as usize].double_value(&[0, 0, 0]);
            trc.push(t.elapsed().as_secs_f64() * 1e3);
            // K = 3 (the operating point; the shipped model was trained with its own K)
            let t = Instant::now();
            let o = model.forward_t(&x0, &xt, &tg, None, 3, false);
            let _ = o.u[3].double_value(&[0, 0, 0]);
            trc3.push(t.elapsed().as_secs_f64() * 1e3);
            // trained K + the terminal correction (what the controller runs per cycle)
            let t = Instant::now();
            let o = model.forward_t(&x0, &xt, &tg, None, k, false);
            let u = trc_control::tensor::to_dmatrix(&o.u[k as usize].squeeze_dim(0))?;
            let (uc, _) = corrector.correct(&inst.x0, &inst.x_target, &u, sol.t_go / horizon, None);
            let _ = uc[(0, 0)];
            trc_tc.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let graph_md = if dev.is_cuda() { cuda_graph_rows(&model, &cfg, k, instances, reps) } else { String::new() };
    let ops_md = op_count_line(&mut model, &cfg, k);
    let what = stem.map_or(format!("--preset {preset} --newton {newton}"), |s| format!("--model {}", s.display()));
    let mut md = header(
        "TRC inference latency vs LCvx (descent)",
        &format!("trc bench inference {what} --instances {instances} --reps {reps} --device {device} --torch-threads {}", tch::get_num_threads()),
    );
    let dev_label = match dev {
        tch::Device::Cpu => "CPU".to_string(),
        d => format!("{d:?} (the network; LCvx and the correction on the CPU)"),
    };
    let _ = writeln!(
        md,
        "Model {} ({} parameters, latent {}, K = {k}, n = {}), {dev_label}, batch 1, libtorch intra-op threads {}; {} instances of the test split (seed 7), {reps} timed runs each.\n\n| solver | p50 [ms] | p99 [ms] |\n|---|---|---|\n| TRC (K = {k}) | {:.3} | {:.3} |\n{}| TRC (K = {k}) + terminal correction (plant model, as in the controller) | {:.3} | {:.3} |\n| LCvx, one cone solve at t_f* | {:.2} | {:.2} |\n| LCvx with t_f search | {:.1} | {:.1} |\n\nRatios (p50): one LCvx solve / TRC = {:.1}x; LCvx with search / TRC = {:.0}x.\n",
        label, card.parameters, card.model.latent, card.model.inner, tch::get_num_threads(), one.len(),
        percentile(&trc, 0.5), percentile(&trc, 0.99),
        if k == 3 { String::new() } else { format!("| TRC (K = 3) | {:.3} | {:.3} |\n", percentile(&trc3, 0.5), percentile(&trc3, 0.99)) },
        percentile(&trc_tc, 0.5), percentile(&trc_tc, 0.99), percentile(&one, 0.5), percentile(&one, 0.99), percentile(&search, 0.5), percentile(&search, 0.99),
        percentile(&one, 0.5) / percentile(&trc, 0.5), percentile(&search, 0.5) / percentile(&trc, 0.5)
    );
    md.push_str(&ops_md);
    md.push_str(&graph_md);
    write_out(out, &md)
}

/// Batch-1 inputs `x0`, `x_target` `[1, n]`, `t_go` `[1]` of test instance `i` (seed 7) on the
/// model's device and dtype (t_go: the instance's, else the problem's default); `None` if the
/// card's problem does not build.
fn device_inputs(model: &trc_control::model::Trc, cfg: &ProblemConfig, i: u64) -> Option<(tch::Tensor, tch::Tensor, tch::Tensor)> {
    let problem = cfg.build().ok()?;
    let inst = sample_instance(cfg, 7, Split::Test, i);
    let t_go = inst.t_go.unwrap_or_else(|| problem.default_t_go());
    let (dev, kind) = (model.device(), model.kind());
    Some((
        trc_control::tensor::from_dvector(&inst.x0, dev).unsqueeze(0).to_kind(kind),
        trc_control::tensor::from_dvector(&inst.x_target, dev).unsqueeze(0).to_kind(kind),
        tch::Tensor::from_slice(&[t_go]).to_kind(kind).to_device(dev),
    ))
}

/// A Markdown paragraph: the ATen ops of one batch-1 refinement (K = `k`, the first test instance)
/// on the CPU's path and on the accelerator's ([`trc_control::model::Trc::set_device_path`]),
/// counted with [`trc_control::model::cuda_graph::count_refinement`]: top-level ops, and those
/// of them that launch a kernel on a GPU (views excluded), with the most frequent. A GPU
/// launches the second count per refinement, eager or replayed from a CUDA graph, so it sets the
/// GPU's batch-1 latency at 1.3-2.6 us per kernel (the per-kernel cost of a replayed paper-size
/// transformer block on an H200; docs/gpu.md).
fn op_count_line(model: &mut trc_control::model::Trc, cfg: &ProblemConfig, k: i64) -> String {
    use trc_control::model::cuda_graph::count_refinement;
    let Some((x0, xt, tg)) = device_inputs(model, cfg, 0) else { return String::new() };
    match (count_refinement(model, &x0, &xt, &tg, k, false), count_refinement(model, &x0, &xt, &tg, k, true)) {
        (Ok(cpu), Ok(acc)) => {
            let top: Vec<String> = acc.top_kernels(8).iter().map(|(name, n)| format!("`{}` {n}", name.trim_start_matches("aten::"))).collect();
            format!(
                "\nATen ops per batch-1 refinement (K = {k}, top-level, counted with at::RecordFunction): {} on the CPU's path (per-sample f64 Gauss-Newton step and acceptance), {} on the accelerator's (batched tensors), of which {} launch a kernel (views and allocations excluded): what a GPU launches per refinement, eager or replayed as a CUDA graph; at 1.3-2.6 us per replayed kernel (docs/gpu.md), {:.1}-{:.1} ms. Most frequent: {}.\n",
                cpu.top,
                acc.top,
                acc.kernels(),
                acc.kernels() as f64 * 1.3e-3,
                acc.kernels() as f64 * 2.6e-3,
                top.join(", ")
            )
        }
        (Err(e), _) | (_, Err(e)) => format!("\nATen ops per refinement: not counted ({e}).\n"),
    }
}

/// On a CUDA device: the batch-1 refinement (K = `k`) captured as a CUDA graph
/// ([`trc_control::model::cuda_graph::GraphedRefinement`]) and replayed, timed on the same
/// instances as the eager rows (until u^(K) is on the host), its largest difference from the
/// eager result, and whether one eager refinement makes a host synchronisation (CUDA's sync
/// debug mode set to error); a Markdown section. A failed capture is reported with its reason.
fn cuda_graph_rows(model: &trc_control::model::Trc, cfg: &ProblemConfig, k: i64, instances: u64, reps: usize) -> String {
    use trc_control::model::cuda_graph::{set_sync_debug_mode, GraphedRefinement};
    let _guard = tch::no_grad_guard();
    let inputs: Vec<_> = (0..instances).filter_map(|i| device_inputs(model, cfg, i)).collect();
    let Some((x0, xt, tg)) = inputs.first() else { return String::new() };
    // host synchronisations of one eager refinement (inputs already on the device)
    let _ = model.forward_t(x0, xt, tg, None, k, false);
    let sync = match set_sync_debug_mode(2) {
        Ok(()) => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.forward_t(x0, xt, tg, None, k, false).u.len()));
            let _ = set_sync_debug_mode(0);
            match r {
                Ok(_) => "none (CUDA's sync debug mode at `error` let the whole refinement through)".to_string(),
                Err(p) => format!("yes: {}", p.downcast_ref::<String>().map_or("a panic", |s| s.as_str()).lines().next().unwrap_or("")),
            }
        }
        Err(e) => format!("not checked ({e})"),
    };
    let t0 = Instant::now();
    let mut graph = match GraphedRefinement::capture(model, x0, xt, tg, None, k) {
        Ok(g) => g,
        Err(e) => return format!("\n**CUDA graph** (batch 1, K = {k}): not captured: {e}. Host synchronisations in one eager refinement: {sync}.\n"),
    };
    let capture_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (mut replay, mut eager, mut diff) = (Vec::new(), Vec::new(), 0.0f64);
    for (x0, xt, tg) in &inputs {
        let reference = model.forward_t(x0, xt, tg, None, k, false).u[k as usize].to_device(tch::Device::Cpu);
        for _ in 0..reps {
            let t = Instant::now();
            let u = graph.run(x0, xt, tg, None).map(|u| u[k as usize].to_device(tch::Device::Cpu));
            replay.push(t.elapsed().as_secs_f64() * 1e3);
            match u {
                Ok(u) => diff = diff.max(f64::try_from((&u - &reference).abs().max()).unwrap_or(f64::NAN)),
                Err(e) => return format!("\n**CUDA graph** (batch 1, K = {k}): replay failed: {e}\n"),
            }
            let t = Instant::now();
            let _ = model.forward_t(x0, xt, tg, None, k, false).u[k as usize].to_device(tch::Device::Cpu);
            eager.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    format!(
        "\n**CUDA graph** (batch 1, K = {k}; inputs already on the device, timed until u^(K) is on the host; captured in {capture_ms:.0} ms):\n\n| mode | p50 [ms] | p99 [ms] |\n|---|---|---|\n| eager | {:.3} | {:.3} |\n| CUDA graph replay | {:.3} | {:.3} |\n\nGraph vs eager: largest |u difference| {diff:.3e} N; speed-up (p50) {:.1}x. Host synchronisations in one eager refinement: {sync}.\n",
        percentile(&eager, 0.5),
        percentile(&eager, 0.99),
        percentile(&replay, 0.5),
        percentile(&replay, 0.99),
        percentile(&eager, 0.5) / percentile(&replay, 0.5),
    )
}

/// Batched inference (several vehicles refined in one call, `TrcPolicy::refine_batch`): for each
/// B in `batches`, per-call p50/p99 and per-vehicle time over `reps` timed calls (fewer when a
/// size takes over 20 s), next to B batch-1 calls; instances cycle over `instances` test states
/// (seed 7) with the LCvx minimum-fuel t_f as t_go.
#[allow(clippy::too_many_arguments)]
pub fn inference_batch(
    stem: Option<&Path>,
    preset: &str,
    newton: &str,
    out: &Path,
    batches: &[usize],
    instances: u64,
    reps: usize,
    device: &str,
    cuda_graph: bool,
) -> AnyResult<()> {
    use trc_control::control::policy::{PlanRequest, TrcPolicy};
    let dev = crate::learn::device(device)?;
    let (vs, model, card, label) = timed_model(stem, preset, newton, dev)?;
    let cfg = card.problem.clone();
    let k = card.model.outer;
    let (params, latent) = (card.parameters, card.model.latent);
    let mut policy = TrcPolicy::from_parts(vs, model, card, k, &label);
    policy.set_cuda_graph(cuda_graph);
    let p = PoweredDescent::new(cfg.descent.clone())?;
    let mut lcvx = LcvxSolver::new(p, SolverSettings::default(), TfSearch::default())?;
    let mut pool = Vec::new();
    for i in 0..instances.max(1) * 2 {
        let inst = sample_instance(&cfg, 7, Split::Test, i);
        if let Ok(sol) = lcvx.solve(&inst) {
            pool.push(PlanRequest { x0: inst.x0, x_target: inst.x_target, t_go: sol.t_go, u_warm: None });
        }
        if pool.len() as u64 >= instances.max(1) {
            break;
        }
    }
    if pool.is_empty() {
        return Err("no feasible test instance for the batched bench".into());
    }
    let sync = |d: tch::Device| {
        if let tch::Device::Cuda(i) = d {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut rows = Vec::new();
    let mut batch1_p50 = None;
    for &b in batches {
        let reqs: Vec<_> = (0..b).map(|i| pool[i % pool.len()].clone()).collect();
        for _ in 0..2 {
            policy.refine_batch(&reqs)?; // warm-up (allocator, kernels)
        }
        let mut t = Vec::new();
        let t_all = Instant::now();
        for _ in 0..reps.max(1) {
            let t0 = Instant::now();
            let u = policy.refine_batch(&reqs)?;
            sync(dev);
            t.push(t0.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(u);
            if t_all.elapsed().as_secs_f64() > 20.0 && t.len() >= 3 {
                break;
            }
        }
        let (p50, p99) = (percentile(&t, 0.5), percentile(&t, 0.99));
        if b == 1 {
            batch1_p50 = Some(p50);
        }
        log::info!("batch {b}: p50 {p50:.3} ms, p99 {p99:.3} ms per call ({} calls)", t.len());
        rows.push((b, t.len(), p50, p99));
    }
    let what = stem.map_or(format!("--preset {preset} --newton {newton}"), |s| format!("--model {}", s.display()));
    let list = batches.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    let mut md = header(
        &format!("Batched TRC inference, {} (descent)", if dev == tch::Device::Cpu { "CPU".to_string() } else { format!("{dev:?}") }),
        &format!(
            "trc bench inference {what} --batch {list} --instances {instances} --reps {reps} --device {device} --torch-threads {}",
            tch::get_num_threads()
        ),
    );
    let _ = writeln!(
        md,
        "Model {label} ({params} parameters, latent {latent}, K = {k}), device {dev:?}, libtorch intra-op threads {}. One call refines B descent problems at once (`TrcPolicy::refine_batch`: inputs stacked to `[B, ...]`, K outer iterations with the in-loop rollout batched; results equal B batch-1 calls, `tests/batch.rs`); the B problems cycle over {} test states (seed 7) at their LCvx t_f. Timed: the call until the plans are on the host. `vs B batch-1 calls`: B x the batch-1 p50 over the batched p50 (above 1: batching pays).\n\n| B | calls | p50 per call [ms] | p99 per call [ms] | p50 per vehicle [ms] | vehicles per second | vs B batch-1 calls |\n|---|---|---|---|---|---|---|",
        tch::get_num_threads(),
        pool.len()
    );
    for (b, n, p50, p99) in rows {
        let speedup = batch1_p50.map_or("-".to_string(), |one| format!("{:.1}x", one * b as f64 / p50));
        let _ = writeln!(md, "| {b} | {n} | {p50:.3} | {p99:.3} | {:.4} | {:.0} | {speedup} |", p50 / b as f64, 1e3 * b as f64 / p50);
    }
    if dev.is_cuda() {
        let _ = writeln!(
            md,
            "\nExecution: {}.",
            policy.graph_status().map_or("each B replayed as a CUDA graph (captured in its warm-up call)".to_string(), |why| format!("eager ({why})"))
        );
    }
    write_out(out, &md)
}

/// The held-out accuracy of the shipped models, from their cards' test metrics (written by
/// `trc eval --update-card` at the trained K), next to the targets.
fn accuracy_section(models: &Path) -> AnyResult<String> {
    let mut md = String::from(
        "## TRC held-out accuracy (shipped models)\n\nProduced by `make models` (`scripts/train_models.sh`: `trc train`, then `trc eval --update-card`); ",
    );
    md.push_str("read from the `metrics` of each `models/<problem>.yaml`, measured on the test split (disjoint from the training and validation streams; `instances`: the feasible test instances evaluated) at the trained K; full tables (K in {1, 2, 3, 5}, latent PCA) and figures in `models/<problem>.eval.md` / `.eval.png`. Gap: `(J - J*) / J*` per instance; `gap of totals`: `sum J / sum J* - 1`. `+ terminal correction`: the same controls after the classical correction (descent), not the network alone; `+ cost refinement`: after at most 10 Levenberg-Marquardt steps on the quadratic cost (Van der Pol, double integrator; `controller.cost_refinement_steps`, what the controller publishes), not the network alone.\n\n");
    md.push_str("Columns: `RK4 plant` = the same plans flown open loop in the RK4 thrust-hold plant (descent; TRC / optimum); `monotone` = share of instances whose J^(k) never rose over k = 0..K, then over k = 0..10 in the `trc eval` K sweep (which also holds the terminal error); `K = 10` = the same chain run to k = 10 (success, mean J^(k)/J* at the trained K -> at k = 10); `GN steps` = the terminal correction's Gauss-Newton steps per plan; `LM steps` = the cost refinement's Levenberg-Marquardt steps per plan (card key `*_with_cost_refinement_gauss_newton_steps`). `test_seed2` rows: a second test split generated from seed 2.\n\n");
    md.push_str("| model | split | K | instances | success | RK4 plant | target | gap mean | gap median | gap of totals | target | monotone 0..K / 0..10 (target 95%) | K = 10: success, J/J* (trained K -> 10) | control violations | state violations |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let pct = |v: Option<&f64>, d: usize| v.map_or("-".to_string(), |v| format!("{:.*}%", d, 100.0 * v));
    let count = |v: Option<&f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for (p, success_target, gap_target) in [
        ("vanderpol", ">= 99%", "mean <= 2%"),
        ("double_integrator", "-", "within 1% of LQR"),
        ("descent", ">= 95% network alone, open loop", "fuel mean <= 1%"),
    ] {
        let stem = models.join(p);
        let card = match checkpoint::read_card(&stem) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(md, "| `{}` | - | - | - | not available: {e} | | | | | | | | | | |", stem.display());
                continue;
            }
        };
        let m = &card.metrics;
        for split in ["test", "test_seed2"] {
            let g = |k: &str| m.get(&format!("{split}_{k}"));
            if g("success_rate").is_none() {
                continue;
            }
            let rk4 = match (g("success_rate_rk4_plant"), g("success_rate_rk4_plant_optimum")) {
                (Some(a), Some(b)) => format!("{} / {}", pct(Some(a), 1), pct(Some(b), 1)),
                _ => "-".to_string(),
            };
            let k10 = match (g("sweep_k10_success_rate"), g("sweep_trained_k_cost"), g("sweep_k10_cost")) {
                (Some(s), Some(a), Some(b)) => format!("{}, {a:.4} -> {b:.4}", pct(Some(s), 1)),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                md,
                "| `models/{p}` ({} parameters, newton {:?}{}) | {split} | {} | {} | {} (optimum {}) | {rk4} | {success_target} | {} | {} | {} | {gap_target} | {} / {} | {k10} | {} | {} |",
                card.parameters,
                card.model.newton,
                match (card.model.accept, card.model.joint_monotone) {
                    (true, true) => ", joint monotone acceptance (cost and terminal error)",
                    (true, false) => ", monotone acceptance",
                    _ => "",
                },
                card.model.outer,
                count(g("samples")),
                pct(g("success_rate"), 1),
                pct(g("success_rate_optimum"), 1),
                pct(g("cost_gap_mean"), 2),
                pct(g("cost_gap_median"), 2),
                pct(g("cost_gap_of_totals"), 2),
                pct(g("monotone_fraction"), 1),
                pct(g("sweep_k10_monotone_fraction"), 1),
                count(g("control_violations")),
                match g("state_violations_optimum") {
                    Some(o) => format!("{} (optimum {o:.0})", count(g("state_violations"))),
                    None => count(g("state_violations")),
                },
            );
            for (w, label, steps) in [("with_terminal_correction", "terminal correction", "GN steps"), ("with_cost_refinement", "cost refinement", "LM steps")]
            {
                let Some(sr) = g(&format!("{w}_success_rate")) else { continue };
                let _ = writeln!(
                    md,
                    "| `models/{p}` + {label} ({} {steps}) | {split} | {} | {} | {} | - | {success_target} | {} | - | - | {gap_target} | - | - | {} | {} |",
                    g(&format!("{w}_gauss_newton_steps")).map_or("-".to_string(), |v| format!("{v:.1}")),
                    card.model.outer,
                    count(g("samples")),
                    pct(Some(sr), 1),
                    pct(g(&format!("{w}_cost_gap_mean")), 2),
                    count(g(&format!("{w}_control_violations"))),
                    count(g(&format!("{w}_state_violations"))),
                );
            }
        }
    }
    md.push('\n');
    Ok(md)
}

/// The capacity ablation (refinement issue): each problem's shipped model next to the same
/// recipe trained at the `paper` preset (`scripts/capacity_ablation.sh`, cards
/// `models/ablation/<problem>_paper.yaml`), read from the two cards: size, training time, the
/// validation metric the checkpoint was selected by, and the held-out test metrics. Empty when
/// no such card exists.
fn capacity_section(models: &Path) -> AnyResult<String> {
    let mut rows = String::new();
    let pct = |v: Option<&f64>, d: usize| v.map_or("-".to_string(), |v| format!("{:.*}%", d, 100.0 * v));
    for p in ["descent", "vanderpol", "double_integrator"] {
        let larger = models.join("ablation").join(format!("{p}_paper"));
        let Ok(big) = checkpoint::read_card(&larger) else { continue };
        let Ok(shipped) = checkpoint::read_card(&models.join(p)) else { continue };
        for (stem, path, card) in [(format!("models/{p}"), models.join(p), &shipped), (format!("models/ablation/{p}_paper"), larger.clone(), &big)] {
            let m = &card.metrics;
            // epochs done: the resume point's count where a run is under way (a card is written at
            // the best epoch and at the end), else the card's, else (older cards) all of them
            let resumed = std::fs::read_to_string(checkpoint::sibling(&path, "resume.yaml"))
                .ok()
                .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
                .and_then(|v| v.get("epoch").and_then(serde_yaml::Value::as_f64));
            let done = resumed.or(m.get("train_epochs_done").copied()).unwrap_or(card.provenance.epochs as f64);
            for split in ["test", "test_seed2"] {
                let g = |k: &str| m.get(&format!("{split}_{k}"));
                let _ = writeln!(
                    rows,
                    "| `{stem}` | {} | {done:.0} / {} (best {}) | {} | {} | {split} | {} | {} | {} | {} | {} | {} |",
                    card.parameters,
                    card.provenance.epochs,
                    card.provenance.best_epoch,
                    m.get("train_wall_s_per_epoch").map_or("-".to_string(), |v| format!("{v:.0} s")),
                    m.get("val_relative_cost").map_or("-".to_string(), |v| format!("{v:.4}")),
                    pct(g("success_rate"), 1),
                    pct(g("cost_gap_mean"), 2),
                    pct(g("cost_gap_median"), 2),
                    pct(g("sweep_k10_monotone_fraction"), 1),
                    match (g("sweep_trained_k_cost"), g("sweep_k10_cost")) {
                        (Some(a), Some(b)) => format!("{a:.4} -> {b:.4}"),
                        _ => "-".to_string(),
                    },
                    card.training.get("lr").map_or("-", String::as_str),
                );
            }
        }
    }
    if rows.is_empty() {
        return Ok(rows);
    }
    let mut md = String::from("## Capacity ablation: the shipped recipes at the `paper` preset\n\n");
    md.push_str("Produced by `scripts/capacity_ablation.sh` (`PROBLEM=<problem>`; resumable, `BUDGET_S` bounds one sitting): the problem's shipped training recipe (`scripts/recipes.sh`: same data, settings, seed; a peak learning rate other than the shipped model's is an override, `LR=...`, named in the last column) at the `paper` preset, on 2 CPU cores, against the shipped `tiny` model; read from the two cards. `epochs`: done / planned (a run still to be resumed has fewer done), with the epoch whose checkpoint was kept; `validation J/J*`: the selection metric of that checkpoint (final iterate's training cost relative to the optimum on the validation split, mean); test metrics at the trained K as in the table above (network alone, no correction). The validation reports side by side, every row of `trc eval`: `models/ablation/<problem>_capacity_val.md`.\n\n");
    md.push_str("| model | parameters | epochs | wall per epoch | validation J/J* | split | success | gap mean | gap median | monotone 0..10 | J/J* trained K -> K = 10 | peak lr |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    md.push_str(&rows);
    md.push('\n');
    Ok(md)
}

/// Concatenates the fragments into the report.
pub fn report(dir: &Path, out: &Path) -> AnyResult<()> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    parts.sort();
    let mut md = String::from("# trc_control benchmarks\n\nGenerated by `make bench` (each section by the command it names; `trc bench report` assembles them). Do not edit by hand: rerun the command. Machines are shared and noisy: compare numbers measured side by side in one run.\n\n");
    let models = dir.parent().unwrap_or(Path::new("")).join("models");
    md.push_str(&accuracy_section(&models)?);
    md.push_str(&capacity_section(&models)?);
    for p in parts {
        md.push_str(&std::fs::read_to_string(&p)?);
        md.push('\n');
    }
    write_out(out, &md)
}

/// One episode's fuel: its index, propellant [kg] and whether it landed.
type EpisodeFuel = (u64, f64, bool);

/// Episodes of the LCvx-policy rows (a conic solve every cycle, 200 ms deadline: measured about
/// 5.5 s of wall time per episode against 2 s for TRC, 2026-12-07).
const LCVX_EPISODES: usize = 100;
/// Episodes of the rows without the correction (diagnostics of the network alone).
const NETWORK_EPISODES: usize = 100;

/// Closed-loop landing success and fuel gap, nominal and with each disturbance set of the
/// catalogue ([`trc_control::config::Disturbances`]).
///
/// Resumable: every cell (one row of the table) is kept as JSON under `cells/closed_loop-seed<seed>/`
/// keyed by the SHA-256 of its configuration, episode count, row label and the model's weights;
/// a rerun of the same command reuses the cells already flown and flies the rest. With
/// `budget_min` > 0 no new cell is started once that many minutes have passed: the rows still
/// to fly are listed as pending in the report, and the command is rerun to finish them. The
/// report states the commit each cell was flown at.
/// With `report_only` no cell is flown: the report is written from the cells already there.
pub fn closed_loop(out: &Path, episodes: usize, seed: u64, policies: &[String], cells: &Path, budget_min: f64, report_only: bool) -> AnyResult<()> {
    let bench_started = Instant::now();
    for p in policies {
        if !["trc", "zem_zev", "solver"].contains(&p.as_str()) {
            return Err(format!("--policies: unknown policy `{p}` (trc, zem_zev, solver)").into());
        }
    }
    let fly_policy = |p: &str| policies.iter().any(|q| q == p);
    let cfg0 = trc_control::config::TrcConfig::from_file(crate::launcher::package_root().join("config/descent.yaml"))?;
    let mut md = header(
        "Closed-loop descent (receding horizon, TRC)",
        &format!("trc bench closed-loop --episodes {episodes} --seed {seed} --policies {}", policies.join(",")),
    );
    let card = trc_control::model::checkpoint::read_card(&crate::launcher::package_root().join("models/descent"))?;
    let _ = writeln!(
        md,
        "Model `models/descent` (latent {}, {} parameters, K = {}), controller and plant in lockstep at {} Hz in one process (every answer held to its {} ms wall-clock deadline); episodes: the first {episodes} feasible test-split states of seed {seed}, each also solved by LCvx (minimum-fuel t_f) for the fuel reference and the goal's t_go. Success: touchdown within 1 m of the site at under 0.5 m/s, the true position never more than 0.27 m (tan 15 deg x 1 m) under the glide-slope cone, and every command inside the thrust annulus and the pointing cone (`src/plant.rs`). Disturbances (`trc closed-loop --disturbances <set>`, `src/config/sim.rs`): `mild` = thrust magnitude +-2%, direction 1 deg, mass estimate +-1%, noise 0.1 m / 0.02 m/s, 20 ms command latency; `harsh` = thrust magnitude +-5%, direction 3 deg, mass estimate +-3%, noise 0.5 m / 0.05 m/s, 50 ms latency, an unmodelled constant acceleration of 0.05 m/s^2 in a random direction and a 10% thrust loss for 5 s; `outage` = `mild` plus a 4 s controller outage (no state reaches the controller, the last command is held). Faults start at a random time in [5 s, 40 s] clipped to the first 60% of the optimum's t_f. The controller estimates the unmodelled acceleration from the measured states (`controller.disturbance_observer_s`) and keeps a thrust reserve in corrected plans (`thrust_margin`, released when the aim point cannot be met within it; with more than 10 s to go the landing time is moved up to `reserve_retime_s` later instead, so that the plan keeps it).\n\nThe shipped configuration (`config/descent.yaml`) finishes every published plan with the terminal correction (projected Gauss-Newton onto the terminal constraint in the plant model, landing-time retiming up to {:.1} s; `src/control/mission/descent.rs`, `src/control/correction.rs`) and a touchdown gate ({:.1} m above the site at t_land, then a {:.2} m/s constant-sink descent): rows `TRC + correction`. Rows `TRC network + retiming by the network` turn the correction off and keep the gate: every published plan is the network's, and when a plan misses the aim point by more than {:.1} tolerance units in the network's own in-loop model the controller asks the network for plans at landing times moved by +0.25..+2 / -0.25, -0.5 s (up to {:.1} s in all) and moves t_land to the best (`controller.terminal_correction.retime_with_policy`). Rows `TRC network alone` turn the correction, the gate and the retiming off: what the network's plans achieve by themselves. The fuel gap counts everything flown, the gate's sink included, against the LCvx optimum to the ground; the column `gate counted` compares with the optimum to the same touchdown condition instead: the LCvx optimum to the ground plus the gate's constant-sink descent at hover thrust (`m |g| h / s`, about 7 kg; an approximation from above of the optimum to the gate, which stops 1 m higher). Rows `ZEM/ZEV law` and `LCvx policy` fly the same controller (finish, gate, observer, same episodes and plant) with the closed-form ZEM/ZEV plan or the LCvx optimum at the controller's t_go (no hindsight choice of t_f: the landing time is the goal's, moved only by the controller's retiming) in place of the network; the LCvx rows have a 200 ms deadline and the first 100 of the episodes (a conic solve every cycle).\n",
        card.model.latent, card.parameters, card.model.outer, cfg0.sim.rate_hz, cfg0.controller.deadline_s * 1e3,
        cfg0.controller.terminal_correction.max_retime_s, cfg0.controller.gate_altitude_m, cfg0.controller.gate_sink_rate_mps,
        cfg0.controller.terminal_correction.retime_threshold, cfg0.controller.terminal_correction.max_retime_s
    );
    md.push_str("| case | episodes | success | touched down | soft touchdown, constraint violated | touchdown error p50 / p95 [m] (touched down) | touchdown speed p50 / p95 [m/s] | fuel gap mean / median | fuel gap, gate counted (mean) | solve p50 / p99 [ms] | ANYTIME | FALLBACK_SHIFTED | TERMINAL | late | correction GN steps per plan | landing-time moves per episode |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    // the classical solver as the policy: the same loop with the optimum in it (a reference for
    // what the loop itself achieves; slower, so fewer episodes and a 200 ms deadline)
    // finishing layer: the shipped correction; the network re-planning at moved landing times
    // (correction off, gate on); nothing (correction, gate and retiming off)
    #[derive(PartialEq)]
    enum Finish {
        Correction,
        NetworkRetime,
        Bare,
    }
    use trc_control::config::Disturbances as D;
    use trc_control::config::PolicyKind as P;
    let lcvx_episodes = episodes.min(LCVX_EPISODES);
    let mut cases = Vec::new();
    if fly_policy("trc") {
        for d in [D::None, D::Mild, D::Harsh, D::Outage] {
            cases.push(("TRC + correction", d, P::Trc, Finish::Correction, episodes));
        }
        for d in [D::None, D::Mild] {
            cases.push(("TRC network + retiming by the network (no correction)", d, P::Trc, Finish::NetworkRetime, episodes.min(NETWORK_EPISODES)));
        }
        cases.push(("TRC network alone (no correction, gate or retiming)", D::None, P::Trc, Finish::Bare, episodes.min(NETWORK_EPISODES)));
    }
    if fly_policy("zem_zev") {
        for d in [D::None, D::Mild, D::Harsh, D::Outage] {
            cases.push(("ZEM/ZEV law + correction (baseline)", d, P::ZemZev, Finish::Correction, episodes));
        }
    }
    if fly_policy("solver") {
        for d in [D::None, D::Mild, D::Harsh, D::Outage] {
            cases.push(("LCvx policy + correction (reference)", d, P::Solver, Finish::Correction, lcvx_episodes));
        }
    }
    // rows of the oracle table (episodes with a thrust loss)
    let mut oracle: Vec<String> = Vec::new();
    // fuel of every episode per (policy, disturbances), for the paired comparison after the table
    let mut fuel: std::collections::HashMap<(String, String), Vec<EpisodeFuel>> = std::collections::HashMap::new();
    let weights = checkpoint::sha256_file(&crate::launcher::package_root().join("models/descent.safetensors"))?;
    let cell_dir = cells.join(format!("closed_loop-seed{seed}"));
    // the code that flies the cells: the tree at the start (a commit made while a long run goes
    // on is not what flew the cells that finish after it)
    let commit = checkpoint::git_commit();
    // what a field added to the config after a cell was flown has when nobody sets it
    let defaults = serde_yaml::to_value(trc_control::config::TrcConfig {
        problem: trc_control::config::ProblemConfig::new(trc_control::config::ProblemKind::Descent),
        controller: Default::default(),
        node: Default::default(),
        sim: Default::default(),
        use_sim_time: false,
    })?;
    // commit -> cells flown at it
    let mut commits: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut pending = 0usize;
    // a ZEM/ZEV or LCvx-policy row among the pending ones (the paired fuel table waits for it)
    let mut pending_others = false;
    for (label, disturbances, policy, finish, episodes) in cases {
        let label = format!("{label}, {disturbances}");
        let mut cfg = cfg0.clone();
        cfg.sim.seed = seed;
        let corrected = finish == Finish::Correction;
        if !corrected {
            cfg.controller.terminal_correction.enabled = false;
            cfg.controller.terminal_correction.retime_with_policy = finish == Finish::NetworkRetime;
        }
        if finish == Finish::Bare {
            cfg.controller.gate_altitude_m = 0.0;
        }
        cfg.sim = cfg.sim.with_disturbances(disturbances);
        cfg.node.policy = policy;
        if policy == P::Solver {
            cfg.controller.deadline_s = 0.2;
        }
        let config_yaml = serde_yaml::to_string(&cfg)?;
        let ident = format!("{label}|{episodes}|{weights}");
        let key = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(config_yaml.as_bytes());
            h.update(ident.as_bytes());
            format!("{:x}", h.finalize())
        };
        let slug = label.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_ascii_lowercase).collect::<Vec<_>>().join("_");
        let cell_path = cell_dir.join(format!("{slug}-{}.json", &key[..12]));
        let found = find_cell(&cell_dir, &slug, &key, &ident, &config_yaml, &defaults)?;
        let cell = match found {
            Some((path, mut c, how)) => {
                log::info!("closed loop ({label}): reusing {} (flown at {}{how})", path.display(), c.commit);
                if c.config_yaml.is_none() {
                    // a cell from before the config was kept in it: its key matched exactly, so
                    // this is its config; kept from now on for the comparison above
                    c.config_yaml = Some(config_yaml.clone());
                    c.ident = Some(ident.clone());
                    write_out(&path, &serde_json::to_string_pretty(&c)?)?;
                }
                c
            }
            None if report_only || (budget_min > 0.0 && bench_started.elapsed().as_secs_f64() > budget_min * 60.0) => {
                let _ = writeln!(md, "| {label} | {episodes} | pending: not flown yet (rerun the command to resume) |||||||||||||");
                pending += 1;
                pending_others |= policy != P::Trc;
                continue;
            }
            None => {
                let mut c = fly_cell(&cfg, &label, episodes, key, &commit)?;
                c.config_yaml = Some(config_yaml);
                c.ident = Some(ident);
                write_out(&cell_path, &serde_json::to_string_pretty(&c)?)?;
                c
            }
        };
        *commits.entry(cell.commit.clone()).or_default() += 1;
        md.push_str(&cell.row);
        md.push('\n');
        if let Some(line) = &cell.oracle {
            oracle.push(line.clone());
        }
        if corrected {
            fuel.entry((format!("{policy}"), disturbances.to_string())).or_default().extend(cell.fuel.iter().copied());
        }
    }
    if pending > 0 {
        log::warn!("{pending} cells still to fly: rerun the same command to resume");
    }
    let _ = writeln!(
        md,
        "\nCells (one row each, `{}`): {}{}.",
        cell_dir.display(),
        commits
            .iter()
            .map(|(c, n)| format!("{n} flown at `{}{}`", &c[..c.len().min(12)], if c.ends_with("+dirty") { "+dirty" } else { "" }))
            .collect::<Vec<_>>()
            .join(", "),
        if pending > 0 { format!(", {pending} pending") } else { String::new() }
    );
    finish_report(md, oracle, fuel, pending_others, out)
}

/// One row of the closed-loop table, kept under `bench/cells/` so that a long benchmark resumes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cell {
    /// SHA-256 of the row's configuration, label, episode count and model weights.
    key: String,
    /// Commit of the code that flew it ([`checkpoint::git_commit`]).
    commit: String,
    /// UTC time it finished (seconds since the Unix epoch).
    finished_unix_s: u64,
    /// Wall-clock time it took [s].
    wall_s: f64,
    /// The markdown table row.
    row: String,
    /// The row of the oracle table (episodes with a thrust loss), if any.
    oracle: Option<String>,
    /// Per-episode fuel (index, kg, landed) for the paired comparison.
    fuel: Vec<EpisodeFuel>,
    /// The configuration it was flown with (YAML), for [`config_compatible`]; absent in cells
    /// flown before 2026-12-07 until a run that matches their key exactly adds it.
    #[serde(default)]
    config_yaml: Option<String>,
    /// `label|episodes|model weights' SHA-256` (the rest of the key).
    #[serde(default)]
    ident: Option<String>,
}

/// The cell of row `slug` under `dir` flown with this configuration: the one whose key is `key`,
/// else one with the same `ident` whose stored configuration is [`config_compatible`] with
/// `config_yaml`. Returns its path, the cell and a note on how it matched.
///
/// # Errors
/// A directory that exists but cannot be read.
fn find_cell(
    dir: &Path,
    slug: &str,
    key: &str,
    ident: &str,
    config_yaml: &str,
    defaults: &serde_yaml::Value,
) -> AnyResult<Option<(std::path::PathBuf, Cell, &'static str)>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(None) };
    let current: serde_yaml::Value = serde_yaml::from_str(config_yaml)?;
    let mut compatible = None;
    for e in entries {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // `<slug>-<12 hex>.json`: another row's slug may extend this one's
        let Some(rest) = name.strip_prefix(slug).and_then(|r| r.strip_prefix('-')).and_then(|r| r.strip_suffix(".json")) else { continue };
        if rest.len() != 12 || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let Some(cell) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Cell>(&b).ok()) else { continue };
        if cell.key == key {
            return Ok(Some((path, cell, "")));
        }
        let old = cell.config_yaml.as_deref().and_then(|y| serde_yaml::from_str::<serde_yaml::Value>(y).ok());
        if cell.ident.as_deref() == Some(ident) && old.is_some_and(|old| config_compatible(&current, &old, Some(defaults))) {
            compatible = Some((path, cell, "; the configuration since differs only in fields added at their defaults"));
        }
    }
    Ok(compatible)
}

/// Whether a cell flown with configuration `old` stands for `current`: equal, except for
/// settings `current` has and `old` lacks (added to the code after the cell was flown) whose
/// value is their default (`defaults`, the same tree built from `Default`). A field added with a
/// default that keeps the old behaviour is a code change like any other: the cells do not track
/// code, only configuration (the commit each was flown at is in the report).
fn config_compatible(current: &serde_yaml::Value, old: &serde_yaml::Value, defaults: Option<&serde_yaml::Value>) -> bool {
    use serde_yaml::Value;
    match (current, old) {
        (Value::Mapping(c), Value::Mapping(o)) => {
            o.keys().all(|k| c.contains_key(k))
                && c.iter().all(|(k, v)| {
                    let d = defaults.and_then(|d| d.get(k));
                    match o.get(k) {
                        Some(ov) => config_compatible(v, ov, d),
                        None => d == Some(v),
                    }
                })
        }
        (c, o) => c == o,
    }
}

/// Flies one cell: `episodes` episodes of `cfg` in lockstep, recorded as flown at `commit`.
fn fly_cell(cfg: &trc_control::config::TrcConfig, label: &str, episodes: usize, key: String, commit: &str) -> AnyResult<Cell> {
    let mut md = String::new();
    let mut oracle = None;
    let started = Instant::now();
    {
        let (rows, solve) = crate::fly::closed_loop_rows(cfg, episodes, true, None)?;
        let (succ, gap_mean, gap_med, _, _) = crate::fly::summary(&rows);
        let fuel: Vec<EpisodeFuel> = rows.iter().map(|r| (r.spec.index, r.result.fuel_kg, r.result.success)).collect();
        // the reference to the same touchdown condition: the optimum to the ground plus the
        // gate's constant-sink descent at hover thrust (m |g| over h / s seconds)
        let gate_s = if cfg.controller.gate_altitude_m > 0.0 { cfg.controller.gate_altitude_m / cfg.controller.gate_sink_rate_mps } else { 0.0 };
        let g = nalgebra::Vector3::from_column_slice(&cfg.problem.descent.gravity).norm();
        let gate_gaps: Vec<f64> = rows
            .iter()
            .map(|r| {
                let sink = (r.spec.x0[6] - r.result.fuel_kg) * g * gate_s / (cfg.problem.descent.isp * cfg.problem.descent.g0);
                r.result.fuel_kg / (r.spec.fuel_opt_kg + sink) - 1.0
            })
            .collect();
        let gate_gap = gate_gaps.iter().sum::<f64>() / gate_gaps.len().max(1) as f64;
        // touchdown error and speed over the episodes that touched down
        let down: Vec<_> = rows.iter().map(|r| &r.result).filter(|r| r.touched_down).collect();
        let pos: Vec<f64> = down.iter().map(|r| r.position_error).collect();
        let spd: Vec<f64> = down.iter().map(|r| r.speed).collect();
        let touched = down.len();
        let _ = writeln!(
            md,
            "| {} | {} | {:.1}% | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:+.2}% / {:+.2}% | {:+.2}% | {:.2} / {:.2} | {} | {} | {} | {} | {} | {:.2} |",
            label,
            rows.len(),
            succ * 100.0,
            touched,
            rows.iter().filter(|r| !r.result.success && crate::fly::outcome(&r.result) != "missed").count(),
            percentile(&pos, 0.5),
            percentile(&pos, 0.95),
            percentile(&spd, 0.5),
            percentile(&spd, 0.95),
            gap_mean * 100.0,
            gap_med * 100.0,
            gate_gap * 100.0,
            percentile(&solve, 0.5),
            percentile(&solve, 0.99),
            rows.iter().map(|r| r.anytime).sum::<u64>(),
            rows.iter().map(|r| r.fallback_shifted).sum::<u64>(),
            rows.iter().map(|r| r.terminal).sum::<u64>(),
            rows.iter().map(|r| r.late).sum::<u64>(),
            if cfg.controller.terminal_correction.enabled {
                format!("{:.2}", rows.iter().map(|r| r.correction_steps_per_plan).sum::<f64>() / rows.len().max(1) as f64)
            } else {
                "-".into()
            },
            rows.iter().map(|r| r.retimes).sum::<u64>() as f64 / rows.len().max(1) as f64,
        );
        let judged: Vec<_> = rows.iter().filter_map(|r| r.recoverable.map(|ok| (ok, r.result.success))).collect();
        if !judged.is_empty() {
            let landable = judged.iter().filter(|(ok, _)| *ok).count();
            let landed = judged.iter().filter(|(ok, s)| *ok && *s).count();
            oracle = Some(format!("| {label} | {} | {landable} | {landed} | {:.1}% |", judged.len(), 100.0 * landed as f64 / landable.max(1) as f64));
        }
        let wall_s = started.elapsed().as_secs_f64();
        log::info!("closed loop ({label}): {wall_s:.0} s");
        Ok(Cell {
            key,
            commit: commit.to_string(),
            finished_unix_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            wall_s,
            row: md.trim_end().to_string(),
            oracle,
            fuel,
            config_yaml: None,
            ident: None,
        })
    }
}

/// The oracle table, the paired fuel table, and the file.
fn finish_report(
    mut md: String,
    oracle: Vec<String>,
    fuel: std::collections::HashMap<(String, String), Vec<EpisodeFuel>>,
    pending_others: bool,
    out: &Path,
) -> AnyResult<()> {
    use trc_control::config::Disturbances as D;
    if !oracle.is_empty() {
        md.push_str("
Episodes with a thrust loss, against a clairvoyant oracle (`closed_loop::clairvoyant_landing`: LCvx that knows the thrust magnitude error, the loss window and the unmodelled acceleration in advance, 24-point t_f grid; it leaves out the direction error, noise and latency, so it is optimistic): an episode it cannot land is unrecoverable by any controller.\n\n| case | episodes with a loss | landable by the oracle | landed | success among landable |\n|---|---|---|---|---|\n");
        for line in &oracle {
            md.push_str(line);
            md.push('\n');
        }
    }
    // paired fuel: TRC against the LCvx policy and ZEM/ZEV on the same episodes, both landed
    let others_flown = fuel.keys().any(|(p, _)| p != "trc");
    if others_flown {
        md.push_str("\nFuel of TRC against the other policies flying the same controller, on the same episodes (those both landed), mean of the per-episode ratio:\n\n| disturbances | TRC vs LCvx policy | episodes | TRC vs ZEM/ZEV | episodes |\n|---|---|---|---|---|\n");
        for d in [D::None, D::Mild, D::Harsh, D::Outage] {
            let paired = |other: &str| -> (f64, usize) {
                let (Some(a), Some(b)) = (fuel.get(&("trc".to_string(), d.to_string())), fuel.get(&(other.to_string(), d.to_string()))) else {
                    return (f64::NAN, 0);
                };
                let r: Vec<f64> = a.iter().filter_map(|(i, f, ok)| b.iter().find(|(j, _, ok2)| j == i && *ok && *ok2).map(|(_, g, _)| f / g - 1.0)).collect();
                (r.iter().sum::<f64>() / r.len().max(1) as f64, r.len())
            };
            let (l, nl) = paired("solver");
            let (z, nz) = paired("zem_zev");
            let pct = |v: f64, n: usize| if n == 0 { "-".to_string() } else { format!("{:+.2}%", v * 100.0) };
            let _ = writeln!(md, "| {d} | {} | {nl} | {} | {nz} |", pct(l, nl), pct(z, nz));
        }
    } else if pending_others {
        md.push_str("\nNo ZEM/ZEV or LCvx-policy row flown yet (pending above): no paired fuel comparison.\n");
    } else {
        md.push_str("\nOnly TRC was flown in this run (`--policies`): no paired fuel comparison with the ZEM/ZEV law or the LCvx policy.\n");
    }
    write_out(out, &md)
}

/// End-to-end latency over DDS at 10 and 20 Hz: trc_sim and trc_node as processes (release
/// binaries beside this one), real time, latency measured by trc_sim from publishing a state to
/// receiving the ControlSequence that answers it.
pub fn latency(out: &Path, episodes: u32) -> AnyResult<()> {
    let root = crate::launcher::package_root();
    let bin = std::env::current_exe()?.parent().map(Path::to_path_buf).ok_or("no binary directory")?;
    let mut md = header("End-to-end latency over DDS", &format!("trc bench latency --episodes {episodes}"));
    md.push_str("trc_sim publishes `state` and measures the wall time until the `control_sequence` answering it (matched by stamp) arrives; trc_node runs the shipped descent model (CPU) as a separate process; Fast DDS on loopback, real time (no sim-time scaling).\n\n| rate | cycles | e2e p50 [ms] | e2e p99 [ms] | solve p50 / p99 [ms] | late (> deadline) | landed |\n|---|---|---|---|---|---|---|\n");
    for rate in [10.0, 20.0] {
        let results = std::env::temp_dir().join(format!("trc-latency-{}-{rate}.yaml", std::process::id()));
        let _ = std::fs::remove_file(&results);
        let cfg = root.join("config/descent.yaml").display().to_string();
        let mut node = std::process::Command::new(bin.join("trc_node")).args(["--ros-args", "--params-file", &cfg, "-p", "node.device:=cpu"]).spawn()?;
        let sim = std::process::Command::new(bin.join("trc_sim"))
            .args([
                "--ros-args",
                "--params-file",
                &cfg,
                "-p",
                &format!("sim.rate_hz:={rate}"),
                "-p",
                &format!("sim.episodes:={episodes}"),
                "-p",
                &format!("sim.results_file:={}", results.display()),
            ])
            .status();
        let _ = std::process::Command::new("kill").args(["-INT", &node.id().to_string()]).status();
        std::thread::sleep(std::time::Duration::from_secs(2));
        let _ = node.kill();
        let _ = node.wait();
        sim?;
        let text = std::fs::read_to_string(&results)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)?;
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "| {rate} Hz | {} | {:.2} | {:.2} | {:.2} / {:.2} | {} | {} |",
                v["cycles"].as_u64().unwrap_or(0),
                f("e2e_ms_p50"),
                f("e2e_ms_p99"),
                f("solve_ms_p50"),
                f("solve_ms_p99"),
                v["late"].as_u64().unwrap_or(0),
                v["result"]["success"].as_bool().unwrap_or(false)
            );
        }
    }
    write_out(out, &md)
}

#[cfg(test)]
mod tests {
    use super::{capacity_section, config_compatible};
    use trc_control::model::checkpoint;

    #[test]
    fn the_capacity_table_puts_a_partial_paper_run_beside_the_shipped_model() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("trc_capacity_section_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ablation")).unwrap();
        let shipped = checkpoint::read_card(&root.join("models/descent")).unwrap();
        std::fs::write(dir.join("descent.yaml"), serde_yaml::to_string(&shipped).unwrap()).unwrap();
        assert_eq!(capacity_section(&dir).unwrap(), "", "no ablation card, no section");
        let mut big = shipped.clone();
        big.parameters = 1_472_613;
        big.provenance.best_epoch = 3;
        big.metrics.clear();
        big.metrics.insert("train_epochs_done".into(), 3.0);
        big.metrics.insert("val_relative_cost".into(), 1.0123);
        std::fs::write(dir.join("ablation/descent_paper.yaml"), serde_yaml::to_string(&big).unwrap()).unwrap();
        let md = capacity_section(&dir).unwrap();
        // a run under way: its resume point counts the epochs done
        std::fs::write(dir.join("ablation/descent_paper.resume.yaml"), "epoch: 5\nstep: 700\nbest: 1.01\nlog: []\ntrain_time_s: 500.0\n").unwrap();
        let md_resumed = capacity_section(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(md_resumed.contains("| `models/ablation/descent_paper` | 1472613 | 5 / "), "{md_resumed}");
        let (n, e, best) = (shipped.parameters, shipped.provenance.epochs, shipped.provenance.best_epoch);
        assert!(md.contains(&format!("| `models/descent` | {n} | {e} / {e} (best {best}) |")), "{md}");
        assert!(md.contains(&format!("| `models/ablation/descent_paper` | 1472613 | 3 / {e} (best 3) | - | 1.0123 | test | - |")), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| `models/")).count(), 4, "two splits per model: {md}");
    }

    fn y(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn a_cell_stands_for_a_config_that_only_adds_fields_at_their_defaults() {
        let old = y("controller: {deadline_s: 0.05, tc: {margin: 0.05}}\nsim: {seed: 29}");
        let defaults = y("controller: {deadline_s: 0.1, tc: {margin: 0.0, reserve: 0.0}, gates: {min_alt: -10.0}}\nsim: {seed: 0}");
        let same = |cur: &str| config_compatible(&y(cur), &old, Some(&defaults));
        assert!(same("controller: {deadline_s: 0.05, tc: {margin: 0.05}}\nsim: {seed: 29}"));
        // added fields and a whole added section, at their defaults
        assert!(same("controller: {deadline_s: 0.05, tc: {margin: 0.05, reserve: 0.0}, gates: {min_alt: -10.0}}\nsim: {seed: 29}"));
        // an added field set to something else, a changed value, a removed field: another config
        assert!(!same("controller: {deadline_s: 0.05, tc: {margin: 0.05, reserve: 4.0}}\nsim: {seed: 29}"));
        assert!(!same("controller: {deadline_s: 0.05, tc: {margin: 0.05}, gates: {min_alt: -5.0}}\nsim: {seed: 29}"));
        assert!(!same("controller: {deadline_s: 0.05, tc: {margin: 0.15}}\nsim: {seed: 29}"));
        assert!(!same("controller: {deadline_s: 0.05, tc: {}}\nsim: {seed: 29}"));
        // a field without a default to compare with
        assert!(!same("controller: {deadline_s: 0.05, tc: {margin: 0.05}, other: 1}\nsim: {seed: 29}"));
    }
}
