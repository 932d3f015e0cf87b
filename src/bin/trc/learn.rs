//! `trc train` and `trc eval`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use tch::{nn, Device};
use trc_control::data::Dataset;
use trc_control::model::checkpoint::{self, ModelCard, Provenance};
use trc_control::model::trc::parameter_count;
use trc_control::model::{ModelConfig, Normalizer, Trc};
use trc_control::plot::{self, Panel, Series};
use trc_control::train::eval::{
    evaluate, k_sweep, latent_pca, CorrectedEval, EvalResult, LatentPca, Stats, SweepRow, COST_REFINE_STEPS, MONOTONE_COST_TOL, MONOTONE_ERROR_TOL,
};
use trc_control::train::{self, Tensors, TrainConfig};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The device a `--device auto|cpu|cuda` flag names ([`trc_control::control::resolve_device`]).
pub fn device(name: &str) -> AnyResult<Device> {
    let choice: trc_control::config::DeviceChoice = serde_yaml::from_str(name).map_err(|_| format!("--device {name}: use auto, cpu or cuda"))?;
    let (dev, why) = trc_control::control::resolve_device(choice)?;
    log::info!("device {dev:?} ({why})");
    Ok(dev)
}

/// Architecture changes on top of a preset (`trc train --tokens/--newton/--outer/--inner`).
pub struct ArchOverrides {
    pub tokens: Option<i64>,
    pub newton: Option<String>,
    pub outer: Option<i64>,
    pub inner: Option<i64>,
    pub accept: bool,
    /// The written model runs the acceptance; training does not.
    pub accept_at_inference: bool,
    /// The acceptance holds the terminal error too (ModelConfig::joint_monotone).
    pub joint_monotone: bool,
}

/// The resume point of a run writing `out`: `OUT.resume.yaml` holds the [`train::ResumeState`]
/// and names the weights file of the same epoch, `OUT.resume.eNNNN.safetensors` (older resume
/// points have no name and use `OUT.resume.safetensors`), with the settings of the run, which a
/// resumed run must repeat.
#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeFile {
    #[serde(flatten)]
    state: train::ResumeState,
    /// File name of the weights, in the directory of the state file.
    #[serde(default)]
    weights: Option<String>,
    /// Architecture, training settings and datasets of the run ([`run_settings`]); absent in
    /// older resume points (not checked then).
    #[serde(default)]
    settings: Option<serde_yaml::Value>,
}

/// What a resumed run must share with the run it continues: the architecture, the training
/// settings (`TrainConfig::to_card`) and the datasets (paths and SHA-256).
fn run_settings(model: &ModelConfig, training: &std::collections::BTreeMap<String, String>, data: &[(String, String)]) -> AnyResult<serde_yaml::Value> {
    let mut m = serde_yaml::Mapping::new();
    m.insert("model".into(), serde_yaml::to_value(model)?);
    m.insert("training".into(), serde_yaml::to_value(training)?);
    m.insert("data".into(), serde_yaml::to_value(data)?);
    Ok(serde_yaml::Value::Mapping(m))
}

/// The entries (`section.key`) in which two [`run_settings`] differ.
fn settings_differences(a: &serde_yaml::Value, b: &serde_yaml::Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["model", "training", "data"] {
        match (a.get(section), b.get(section)) {
            (Some(serde_yaml::Value::Mapping(x)), Some(serde_yaml::Value::Mapping(y))) => {
                for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    if x.get(k) != y.get(k) {
                        out.push(format!("{section}.{}", k.as_str().unwrap_or("?")));
                    }
                }
            }
            (x, y) if x != y => out.push(section.to_string()),
            _ => {}
        }
    }
    out
}

/// The state file of a run writing `out`.
fn resume_state_path(out: &Path) -> std::path::PathBuf {
    checkpoint::sibling(out, "resume.yaml")
}

/// Writes the resume point after `state.epoch` so that a kill of the process at any moment
/// leaves a whole one: the epoch's weights are written to a temporary file and renamed to their
/// own name, then the state file naming them is replaced by a rename (the commit point); the
/// weights of every other epoch are removed after it. (Renames, no fsync: a power loss may lose
/// the last epoch's point.)
fn write_resume_point(out: &Path, state: &train::ResumeState, settings: &serde_yaml::Value, vs: &nn::VarStore) -> AnyResult<()> {
    let rs = resume_state_path(out);
    let weights = checkpoint::sibling(out, &format!("resume.e{:04}.safetensors", state.epoch));
    let name = weights.file_name().and_then(|n| n.to_str()).ok_or("resume weights path has no file name")?.to_string();
    let wtmp = checkpoint::sibling(out, "resume.weights.tmp.safetensors");
    vs.save(&wtmp)?;
    std::fs::rename(&wtmp, &weights)?;
    let tmp = checkpoint::sibling(out, "resume.yaml.tmp");
    let file = ResumeFile { state: state.clone(), weights: Some(name.clone()), settings: Some(settings.clone()) };
    std::fs::write(&tmp, serde_yaml::to_string(&file)?)?;
    std::fs::rename(&tmp, &rs)?;
    remove_resume_weights(out, Some(&name));
    Ok(())
}

/// Removes the resume weights of a run writing `out` (`OUT.resume.e*.safetensors` and the older
/// `OUT.resume.safetensors`), all but the file named `keep`.
fn remove_resume_weights(out: &Path, keep: Option<&str>) {
    let stem = checkpoint::sibling(out, "resume.");
    let (Some(dir), Some(prefix)) = (stem.parent(), stem.file_name().and_then(|n| n.to_str())) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name.strip_prefix(prefix).is_some_and(|rest| rest == "safetensors" || (rest.starts_with('e') && rest.ends_with(".safetensors")));
        if ours && Some(name.as_str()) != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Reads the resume point of a run writing `out`: its file and the path of its weights.
fn read_resume_point(out: &Path) -> AnyResult<(ResumeFile, std::path::PathBuf)> {
    let rs = resume_state_path(out);
    let file: ResumeFile = serde_yaml::from_str(&std::fs::read_to_string(&rs)?)?;
    let weights = match &file.weights {
        Some(name) => rs.parent().unwrap_or(Path::new("")).join(name),
        None => checkpoint::sibling(out, "resume.safetensors"),
    };
    Ok((file, weights))
}

#[allow(clippy::too_many_arguments)]
pub fn train(
    train_paths: &[std::path::PathBuf],
    val_path: &Path,
    preset: &str,
    arch: &ArchOverrides,
    out: &Path,
    cfg: TrainConfig,
    device_name: &str,
    resume: bool,
    budget_s: Option<f64>,
) -> AnyResult<()> {
    if let Some(b) = budget_s.filter(|b| !(b.is_finite() && *b > 0.0)) {
        return Err(format!("--budget-s {b}: give a positive number of seconds").into());
    }
    let dev = device(device_name)?;
    let tr = Dataset::concat(train_paths.iter().map(Dataset::load).collect::<Result<Vec<_>, _>>()?)?;
    let va = Dataset::load(val_path)?;
    if tr.meta.problem != va.meta.problem {
        return Err("training and validation sets were generated for different problem configurations".into());
    }
    if tr.meta.split == va.meta.split && tr.meta.seed == va.meta.seed {
        return Err("training and validation sets are the same stream: generate the validation set with --split val".into());
    }
    let mut model_cfg = ModelConfig::preset(preset)?;
    if let Some(t) = arch.tokens {
        // the tokenisation ablation: T horizon tokens instead of the preset's
        model_cfg.tokens = t;
    }
    if let Some(nw) = &arch.newton {
        model_cfg.newton = trc_control::model::Newton::parse(nw)?;
    }
    if let Some(k) = arch.outer {
        model_cfg.outer = k;
    }
    if let Some(n) = arch.inner {
        model_cfg.inner = n;
    }
    model_cfg.accept |= arch.accept;
    model_cfg.joint_monotone |= arch.joint_monotone;
    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(dev);
    let norm = Normalizer::fit(&tr);
    let model = Trc::new(&vs.root(), &model_cfg, &tr.meta.problem, norm.clone())?;
    let params = parameter_count(&vs);
    log::info!("train: {} model, {preset} preset ({params} parameters), {} train / {} val samples, device {dev:?}", tr.meta.problem.name, tr.len(), va.len());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let train_data = train_paths.iter().map(|p| Ok((p.display().to_string(), checkpoint::sha256_file(p)?))).collect::<AnyResult<Vec<_>>>()?;
    let val_data = vec![(val_path.display().to_string(), checkpoint::sha256_file(val_path)?)];
    let settings = run_settings(&model_cfg, &cfg.to_card(), &[train_data.clone(), val_data.clone()].concat())?;
    let resumed = if resume {
        let rs = resume_state_path(out);
        if !rs.exists() {
            return Err(format!("--resume: no resume point {} (start the run without --resume)", rs.display()).into());
        }
        let (file, rw) = read_resume_point(out)
            .map_err(|e| format!("--resume: cannot read the resume point {} ({e}); delete it and start the run without --resume", rs.display()))?;
        if let Some(before) = &file.settings {
            let diff = settings_differences(before, &settings);
            if !diff.is_empty() {
                return Err(format!(
                    "--resume: the resume point {} was written by a run with other settings ({}); rerun that run's command with --resume, or start over without --resume",
                    rs.display(),
                    diff.join(", ")
                )
                .into());
            }
        }
        if !rw.exists() {
            return Err(format!("--resume: the resume point {} names {}, which is missing; start the run without --resume", rs.display(), rw.display()).into());
        }
        vs.load(&rw).map_err(|e| format!("--resume: {} does not fit this architecture ({e}); resume with the same command", rw.display()))?;
        let st = file.state;
        log::info!("train: resuming after epoch {} of {} (best validation cost {:.4}; AdamW moments restart)", st.epoch, cfg.epochs, st.best);
        Some(st)
    } else {
        if resume_state_path(out).exists() {
            // a fresh run: the resume point of an earlier run writing `out` would otherwise stay
            // until this run's first epoch replaces it, paired with this run's checkpoint
            log::info!("train: starting over: removing the resume point of an earlier run ({})", resume_state_path(out).display());
            std::fs::remove_file(resume_state_path(out))?;
            remove_resume_weights(out, None);
        }
        None
    };
    let prior_epochs = resumed.as_ref().map_or(0, |s| s.log.len());
    let (ttr, tva) = (Tensors::new(&tr, dev), Tensors::new(&va, dev));
    let mut card = ModelCard {
        version: checkpoint::CARD_VERSION,
        problem: tr.meta.problem.clone(),
        model: model_cfg,
        normalizer: norm,
        parameters: params,
        training: cfg.to_card(),
        provenance: Provenance {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            seed: cfg.seed,
            train_data,
            val_data,
            commit: checkpoint::git_commit(),
            device: format!("{dev:?}"),
            train_time_s: 0.0,
            epochs: cfg.epochs,
            best_epoch: 0,
        },
        metrics: Default::default(),
    };
    // a safeguard of the written model only: training (and its validation) ran without it
    card.model.accept |= arch.accept_at_inference;
    let started = Instant::now();
    let prior_s = resumed.as_ref().map_or(0.0, |s| s.train_time_s);
    if resumed.is_some() {
        if let Ok(prev) = checkpoint::read_card(out) {
            // keep the interrupted run's best checkpoint record (and its original command); not
            // its held-out metrics, which belong to that checkpoint, not to a better one found now
            card.provenance.best_epoch = prev.provenance.best_epoch;
            card.provenance.command = prev.provenance.command;
            card.metrics = prev.metrics.into_iter().filter(|(k, _)| k.starts_with("val_") || k.starts_with("train_")).collect();
        }
        card.provenance.command.push_str(&format!(" (resumed: {command})"));
    }
    let mut save_err = None;
    let mut resume_err = None;
    let mut stopped_at = None;
    let log = train::train(
        &model,
        &vs,
        &ttr,
        &tva,
        &cfg,
        true,
        resumed,
        |epoch, entry, vs| {
            card.provenance.best_epoch = epoch;
            card.provenance.train_time_s = prior_s + started.elapsed().as_secs_f64();
            card.metrics.insert("val_loss".into(), entry.val_loss);
            card.metrics.insert("val_bc_mse".into(), entry.val_bc);
            card.metrics.insert("val_relative_cost".into(), entry.val_cost);
            // epochs run when this checkpoint was written (the final card has the run's count)
            card.metrics.insert("train_epochs_done".into(), epoch as f64);
            if let Err(e) = checkpoint::save(out, vs, &card) {
                save_err = Some(e);
            }
        },
        |state, vs| {
            // the error of the last epoch's write only: an earlier failure was repaired by a later write
            resume_err = write_resume_point(out, state, &settings, vs).err().map(|e| e.to_string());
            if budget_s.is_some_and(|b| started.elapsed().as_secs_f64() >= b) && state.epoch < cfg.epochs {
                stopped_at = Some(state.epoch);
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        },
    )?;
    if let Some(e) = &resume_err {
        log::warn!("train: could not write the resume point {}: {e}", resume_state_path(out).display());
    }
    if let Some(e) = stopped_at {
        if resume_err.is_some() {
            return Err(format!(
                "--budget-s: stopped after epoch {e} of {}, but its resume point could not be written (see above): free the disk or fix the permissions of {}, then resume (from an earlier epoch's point if one exists) or start over",
                cfg.epochs,
                resume_state_path(out).display()
            )
            .into());
        }
        log::info!("train: wall-time budget spent: stopped after epoch {e} of {}; to go on, run the same command with --resume", cfg.epochs);
    }
    if log.len() == prior_epochs {
        log::info!("train: all {} epochs were done already; nothing trained, the card is unchanged", cfg.epochs);
        return Ok(());
    }
    if let Some(e) = save_err {
        return Err(e.into());
    }
    if card.provenance.best_epoch == 0 {
        return Err("training never produced a checkpoint".into());
    }
    // record the total time in the card (weights stay those of the best epoch)
    let mut final_card = checkpoint::read_card(out)?;
    final_card.provenance.train_time_s = prior_s + started.elapsed().as_secs_f64();
    final_card.metrics.insert("train_wall_s_per_epoch".into(), log.iter().map(|e| e.wall_s).sum::<f64>() / log.len().max(1) as f64);
    // epochs run so far: below provenance.epochs while a budgeted run is still to be resumed
    final_card.metrics.insert("train_epochs_done".into(), log.len() as f64);
    let (wpath, cpath) = checkpoint::paths(out);
    let text = serde_yaml::to_string(&final_card)?;
    std::fs::write(&cpath, format!("# trc_control model card (written by trc train; do not edit the weights' card by hand)\n{text}"))?;
    let mut csv = String::from("epoch,train_loss,val_loss,val_bc,val_relative_cost,lr,wall_s\n");
    for e in &log {
        let _ = writeln!(csv, "{},{},{},{},{},{},{:.2}", e.epoch, e.train_loss, e.val_loss, e.val_bc, e.val_cost, e.lr, e.wall_s);
    }
    let csv_path = checkpoint::sibling(out, "train.csv");
    std::fs::write(&csv_path, csv)?;
    let png = checkpoint::sibling(out, "train.png");
    let ep = |f: fn(&train::EpochLog) -> f64| log.iter().map(|e| (e.epoch as f64, f(e))).collect::<Vec<_>>();
    plot::write_png(
        &png,
        &[
            Panel::new(
                "Loss (values <= 0 not drawn)",
                "epoch",
                "loss",
                vec![
                    Series::line("train", ep(|e| e.train_loss)),
                    Series::line("validation", ep(|e| e.val_loss)),
                    Series::line("validation cloning MSE (weighted if bc_relative_floor > 0)", ep(|e| e.val_bc)),
                ],
            )
            .log_y(),
            Panel::new("Validation cost of the final iterate", "epoch", "J^(K) / J*", vec![Series::line("", ep(|e| e.val_cost))]),
        ],
        (560, 400),
        2,
    )?;
    log::info!(
        "train: best epoch {} of {}, {:.0} s; wrote {}, {}, {}, {}",
        final_card.provenance.best_epoch,
        cfg.epochs,
        final_card.provenance.train_time_s,
        wpath.display(),
        cpath.display(),
        csv_path.display(),
        png.display()
    );
    Ok(())
}

/// One row of the eval table: `gap` relative cost gap, `success` / `optimum` rates, violation
/// counts, and the landing, continuous-success, per-iteration and monotone cells preformatted.
#[allow(clippy::too_many_arguments)]
fn table_row(
    name: &str,
    k: i64,
    gap: &Stats,
    total_gap: f64,
    success: f64,
    optimum: f64,
    violations: (usize, usize),
    land: &str,
    cont: &str,
    iters: &str,
    mono: &str,
) -> String {
    format!(
        "| {name} | {k} | {:.2}% | {:.2}% | {:.2}% | {:.2}% | {:.1}% | {:.1}% | {} | {} | {land} | {cont} | {iters} | {mono} |\n",
        100.0 * gap.mean,
        100.0 * gap.median,
        100.0 * gap.p95,
        100.0 * total_gap,
        100.0 * success,
        100.0 * optimum,
        violations.0,
        violations.1
    )
}

fn row(name: &str, r: &EvalResult) -> String {
    let cont = r.continuous_success.map_or("-".into(), |(a, b)| format!("{:.1}% / {:.1}%", 100.0 * a, 100.0 * b));
    let land = r.landing_error_median.map_or("-".into(), |(p, v)| format!("{p:.2} m, {v:.3} m/s"));
    let iters = r.per_iteration_cost.iter().map(|c| format!("{c:.4}")).collect::<Vec<_>>().join(" -> ");
    table_row(
        name,
        r.outer,
        &r.cost_gap,
        r.total_gap,
        r.success,
        r.success_optimum,
        (r.control_violations, r.state_violations),
        &land,
        &cont,
        &iters,
        &format!("{:.1}%", 100.0 * r.monotone_fraction),
    )
}

fn corrected_row(name: &str, r: &EvalResult, c: &CorrectedEval) -> String {
    let descent = r.landing_error_median.is_some();
    let land = if descent { format!("{:.2} m, {:.3} m/s", c.landing_error_median.0, c.landing_error_median.1) } else { "-".into() };
    let cont =
        if descent { format!("{:.1}% / {:.1}%", 100.0 * c.continuous_success, r.continuous_success.map_or(f64::NAN, |x| 100.0 * x.1)) } else { "-".into() };
    let iters = format!("({:.1} {} steps)", c.mean_iterations, if descent { "Gauss-Newton" } else { "Levenberg-Marquardt" });
    table_row(name, r.outer, &c.cost_gap, c.total_gap, c.success, r.success_optimum, (c.control_violations, c.state_violations), &land, &cont, &iters, "-")
}

fn sweep_table(md: &mut String, name: &str, rows: &[SweepRow], trained_k: i64) {
    let _ = writeln!(
        md,
        "\nK sweep of {name} (trained K = {trained_k}): iterate k of one chain, which is what K = k returns. Terminal error |e|_2 in tolerance units (descent: position / 1 m and velocity / 0.5 m/s); monotone = share of instances whose terminal error (tolerance {MONOTONE_ERROR_TOL}) and J^(k)/J* (tolerance {MONOTONE_COST_TOL}) never rose over iterations 0..k.\n"
    );
    let _ = writeln!(md, "| k | success | terminal error | J^(k)/J* | gap mean | control violations | monotone 0..k |\n|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {:.1}% | {:.4} | {:.5} | {:.2}% | {} | {:.1}% |",
            r.k,
            100.0 * r.success,
            r.terminal_error,
            r.cost,
            100.0 * r.gap,
            r.control_violations,
            100.0 * r.monotone
        );
    }
}

#[allow(clippy::too_many_arguments)]
/// `trc eval`; `update_card`: the prefix of the metric names to write into the card (`test`).
pub fn eval(stem: &Path, test_path: &Path, ks: &[i64], compare: Option<&Path>, report: Option<&Path>, update_card: Option<&str>, sweep: i64) -> AnyResult<()> {
    if let Some(k) = ks.iter().find(|k| **k < 1) {
        return Err(format!("--ks: K must be >= 1, got {k}").into());
    }
    let test = Dataset::load(test_path)?;
    let dev = Device::cuda_if_available();
    let (_vs, model, card) = checkpoint::load(stem, dev, Some(&test.meta.problem))?;
    if card.provenance.train_data.iter().any(|(p, _)| Path::new(p) == test_path) || test.meta.split != trc_control::data::Split::Test {
        log::warn!("eval: {} is not a --split test dataset distinct from the training data; the numbers are not held-out", test_path.display());
    }
    let lw = train::TrainConfig::default().landing_weight;
    let mut md = format!(
        "# Evaluation of `{}`\n\nCommand: `{}`. Test set: `{}` ({} samples, split {:?}, seed {}). Model: {} parameters, trained K = {}, n = {}.\n\n",
        stem.display(),
        std::env::args().collect::<Vec<_>>().join(" "),
        test_path.display(),
        test.len(),
        test.meta.split,
        test.meta.seed,
        card.parameters,
        card.model.outer,
        card.model.inner
    );
    md.push_str(&format!("Success and cost are rolled out in the demonstrations' discrete model (RK4 for Van der Pol / double integrator; the LCvx acceleration-hold model for descent), and the optimum is held to the same criterion. `continuous` re-simulates the thrust through the RK4 thrust-hold plant (TRC / optimum). J^(k) is the training cost relative to J* (descent: fuel plus landing-error term). Rows `+ terminal correction` take the same final controls through the projected Gauss-Newton correction onto the terminal constraint (`src/control/correction.rs`; descent); rows `+ cost Gauss-Newton refinement` take them through at most {COST_REFINE_STEPS} Levenberg-Marquardt (damped Gauss-Newton) steps on the quadratic cost, each kept only if it lowers J and keeps a successful terminal state successful (`cost_gauss_newton_refine` in `src/problems/sim.rs`; Van der Pol, double integrator): classical steps after the network, reported separately from the raw network.\n\n"));
    md.push_str("| model | K | gap mean | gap median | gap p95 | gap of totals | success | optimum success | control violations | state violations | landing error (median) | continuous success | J^(0) -> J^(K) | monotone |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut at_trained = None;
    let mut state_kinds = Vec::new();
    let (mut iter_series, mut gap_series) = (Vec::new(), Vec::new());
    for &k in ks {
        let r = evaluate(&model, &test, k, 256, lw);
        // the iterates of a smaller K are a prefix of a larger K's: one line, the largest K
        if iter_series.first().is_none_or(|s: &Series| s.points.len() < r.per_iteration_cost.len()) {
            iter_series =
                vec![Series::line(format!("mean over the test set, K = {k}"), r.per_iteration_cost.iter().enumerate().map(|(i, c)| (i as f64, *c)).collect())];
        }
        let n = r.gaps.len().max(1) as f64;
        gap_series
            .push(Series::line(format!("K = {k}"), r.gaps.iter().enumerate().map(|(i, v)| (100.0 * (i as f64 + 0.5) / n, (100.0 * v).max(1e-3))).collect()));
        log::info!("K = {k}: gap mean {:.2}%, success {:.1}% (optimum {:.1}%)", 100.0 * r.cost_gap.mean, 100.0 * r.success, 100.0 * r.success_optimum);
        md.push_str(&row(&format!("`{}`", stem.display()), &r));
        if !r.state_violation_kinds.is_empty() {
            let kinds: Vec<String> = r.state_violation_kinds.iter().map(|(k, a, b)| format!("{k} {a} (optimum {b})")).collect();
            log::info!("K = {k}: state violations by kind (samples): {}", kinds.join(", "));
            state_kinds.push(format!("K = {k}: {}", kinds.join(", ")));
        }
        if let Some(c) = &r.corrected {
            let what = if r.landing_error_median.is_some() {
                "terminal correction".to_string()
            } else {
                format!("cost Gauss-Newton refinement (<= {COST_REFINE_STEPS} steps)")
            };
            log::info!("K = {k} + {what}: gap mean {:.2}%, success {:.1}%, {:.1} steps", 100.0 * c.cost_gap.mean, 100.0 * c.success, c.mean_iterations);
            md.push_str(&corrected_row(&format!("`{}` + {what}", stem.display()), &r, c));
        }
        if k == card.model.outer {
            at_trained = Some(r);
        }
    }
    let mut other_model = None;
    if let Some(other) = compare {
        let (vs2, m2, c2) = checkpoint::load(other, dev, Some(&test.meta.problem))?;
        let r = evaluate(&m2, &test, c2.model.outer, 256, lw);
        md.push_str(&row(
            &format!(
                "`{}` ({} parameters, lambda = {}, newton = {:?})",
                other.display(),
                c2.parameters,
                c2.training.get("lambda").cloned().unwrap_or_default(),
                c2.model.newton
            ),
            &r,
        ));
        other_model = Some((vs2, m2, c2, other));
    }
    // the corrector of the Newton modes: Gauss-Newton on the terminal error (descent), one
    // Levenberg-Marquardt step on a quadratic cost (Van der Pol, double integrator)
    let gn_part = if model.simulator().problem().quadratic_cost().is_some() { "Levenberg-Marquardt part" } else { "Gauss-Newton part" };
    // ablation of the Newton-structured decoder: the same model with its learned move zeroed
    // (residual_decoder's output layer = 0), i.e. the Gauss-Newton part alone from the same u^(0)
    use trc_control::model::Newton;
    // ablation of the corrector: an `input` model run with a Gauss-Newton corrector step after
    // each learned move (newton = corrected, the same weights, never trained with it)
    let with_corrector = if card.model.newton == Newton::Input {
        let (vs4, m4, c4) =
            checkpoint::load_as(stem, dev, Some(&test.meta.problem), checkpoint::RunAs { newton: Some(Newton::Corrected), ..Default::default() })?;
        for &k in ks {
            let r = evaluate(&m4, &test, k, 256, lw);
            md.push_str(&row(&format!("`{}` with a Gauss-Newton corrector in the loop (untrained with it)", stem.display()), &r));
        }
        Some((vs4, m4, c4))
    } else {
        None
    };
    // an inference-time ablation of the same weights: its rows at every K, kept for the K sweep
    let mut ablation = |run_as: checkpoint::RunAs, label: String| -> AnyResult<_> {
        let (vs, m, c) = checkpoint::load_as(stem, dev, Some(&test.meta.problem), run_as)?;
        for &k in ks {
            md.push_str(&row(&label, &evaluate(&m, &test, k, 256, lw)));
        }
        Ok(Some((vs, m, c, label)))
    };
    let with = |on: bool| if on { "with" } else { "without" };
    // the monotone acceptance (globalisation) switched the other way than trained
    let on = !card.model.accept;
    let flipped = ablation(checkpoint::RunAs { accept: Some(on), ..Default::default() }, format!("`{}` {} monotone acceptance", stem.display(), with(on)))?;
    // the joint monotone acceptance (cost and terminal error both held, with the error-holding
    // cost step as the fallback) switched the other way than trained
    let joint_flipped =
        if card.model.accept && matches!(card.model.newton, Newton::Step | Newton::Corrected) && model.simulator().problem().quadratic_cost().is_some() {
            let on = !card.model.joint_monotone;
            let label = format!("`{}` {} joint monotone acceptance (cost and terminal error)", stem.display(), with(on));
            ablation(checkpoint::RunAs { joint_monotone: Some(on), ..Default::default() }, label)?
        } else {
            None
        };
    let gn_only = if matches!(card.model.newton, Newton::Step | Newton::Corrected) {
        let (vs3, m3, c3) = checkpoint::load(stem, dev, Some(&test.meta.problem))?;
        tch::no_grad(|| {
            for (name, mut t) in vs3.variables() {
                if name.starts_with("residual_decoder.fc2") {
                    let _ = t.zero_();
                }
            }
        });
        let r = evaluate(&m3, &test, c3.model.outer, 256, lw);
        md.push_str(&row(&format!("`{}` {gn_part} alone (learned move zeroed)", stem.display()), &r));
        Some((vs3, m3))
    } else {
        None
    };
    if !state_kinds.is_empty() {
        md.push_str(&format!(
            "\nState-constraint violations of the network's plans by kind (samples; the optimum under the same check in brackets): {}.\n\n",
            state_kinds.join("; ")
        ));
    }
    let mut sweep_rows = Vec::new();
    let mut sweep_series = Vec::new();
    if sweep > 0 {
        sweep_rows = k_sweep(&model, &test, sweep, 256, lw);
        sweep_table(&mut md, &format!("`{}`", stem.display()), &sweep_rows, card.model.outer);
        sweep_series.push(Series::line(format!("{} success", stem.display()), sweep_rows.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        if let Some((_, m3)) = &gn_only {
            let rows3 = k_sweep(m3, &test, sweep, 256, lw);
            sweep_table(&mut md, &format!("`{}` {gn_part} alone", stem.display()), &rows3, card.model.outer);
            sweep_series.push(Series::line(format!("{gn_part} alone success"), rows3.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        }
        if let Some((_, m5, c5, label)) = &flipped {
            let rows5 = k_sweep(m5, &test, sweep, 256, lw);
            sweep_table(&mut md, label, &rows5, c5.model.outer);
            sweep_series.push(Series::line(label.replace('`', ""), rows5.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        }
        if let Some((_, m6, c6, label)) = &joint_flipped {
            let rows6 = k_sweep(m6, &test, sweep, 256, lw);
            sweep_table(&mut md, label, &rows6, c6.model.outer);
            sweep_series.push(Series::line(label.replace('`', ""), rows6.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        }
        if let Some((_, m4, c4)) = &with_corrector {
            let rows4 = k_sweep(m4, &test, sweep, 256, lw);
            sweep_table(&mut md, &format!("`{}` with a Gauss-Newton corrector in the loop", stem.display()), &rows4, c4.model.outer);
            sweep_series.push(Series::line("with the corrector in the loop success", rows4.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        }
        if let Some((_, m2, c2, other)) = &other_model {
            let rows2 = k_sweep(m2, &test, sweep, 256, lw);
            sweep_table(&mut md, &format!("`{}`", other.display()), &rows2, c2.model.outer);
            sweep_series.push(Series::line(format!("{} success", other.display()), rows2.iter().map(|r| (r.k as f64, 100.0 * r.success)).collect()));
        }
    }
    let pca = latent_pca(&model, &test, card.model.outer.max(3), 128);
    let _ = writeln!(md, "\nLatent PCA over {} test instances (top-2 principal components of z_H / z_L across outer iterations):\n", test.len().min(128));
    let _ = writeln!(md, "| k | z_H mean (PC1, PC2) | z_L mean (PC1, PC2) | z_H step | z_L step |\n|---|---|---|---|---|");
    for k in 0..pca.z_h_points.len() {
        let step = |v: &Vec<f64>| if k == 0 { "-".to_string() } else { format!("{:.4}", v[k - 1]) };
        let (h, l) = (LatentPca::mean(&pca.z_h_points[k]), LatentPca::mean(&pca.z_l_points[k]));
        let _ = writeln!(md, "| {} | ({:.3}, {:.3}) | ({:.3}, {:.3}) | {} | {} |", k + 1, h.0, h.1, l.0, l.1, step(&pca.z_h_step), step(&pca.z_l_step));
    }
    let out = report.map(Path::to_path_buf).unwrap_or_else(|| checkpoint::sibling(stem, "eval.md"));
    let png = out.with_extension("png");
    let scatter = |pts: &[Vec<(f64, f64)>]| pts.iter().enumerate().map(|(k, p)| Series::dots(format!("k = {}", k + 1), p.clone())).collect::<Vec<_>>();
    plot::write_png(
        &png,
        &[
            Panel::new("Cost per iteration (mean)", "outer iteration k", "J^(k) / J*", iter_series).log_y(),
            Panel::new("Cost gap to the optimum, sorted", "test samples [%]", "gap (J - J*)/J* [%] (<= 0.001%, negatives included, at the floor)", gap_series)
                .log_y(),
            Panel::new("z_H across iterations (PCA)", "PC1", "PC2", scatter(&pca.z_h_points)),
            Panel::new("z_L across iterations (PCA)", "PC1", "PC2", scatter(&pca.z_l_points)),
            Panel::new(
                "K sweep: terminal error per iterate (mean)",
                "outer iteration k",
                "|e| [tolerance units]",
                vec![Series::line("terminal error", sweep_rows.iter().map(|r| (r.k as f64, r.terminal_error.max(1e-6))).collect())],
            )
            .log_y(),
            Panel::new("K sweep: success per iterate", "outer iteration k", "success [%]", sweep_series),
        ],
        (560, 420),
        2,
    )?;
    let _ = writeln!(
        md,
        "\nFigure: [`{}`]({}) (J^(k) per iteration, sorted cost gaps per K, z_H / z_L in the PCA plane per iteration).",
        png.display(),
        png.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default()
    );
    std::fs::write(&out, &md)?;
    log::info!("wrote {}", out.display());
    if let Some(prefix) = update_card {
        if let Some(r) = at_trained {
            let mut c = checkpoint::read_card(stem)?;
            c.metrics.insert(format!("{prefix}_cost_gap_mean"), r.cost_gap.mean);
            c.metrics.insert(format!("{prefix}_cost_gap_median"), r.cost_gap.median);
            c.metrics.insert(format!("{prefix}_cost_gap_p95"), r.cost_gap.p95);
            c.metrics.insert(format!("{prefix}_cost_gap_of_totals"), r.total_gap);
            c.metrics.insert(format!("{prefix}_success_rate"), r.success);
            c.metrics.insert(format!("{prefix}_success_rate_optimum"), r.success_optimum);
            c.metrics.insert(format!("{prefix}_monotone_fraction"), r.monotone_fraction);
            c.metrics.insert(format!("{prefix}_control_violations"), r.control_violations as f64);
            c.metrics.insert(format!("{prefix}_state_violations"), r.state_violations as f64);
            c.metrics.insert(format!("{prefix}_state_violations_optimum"), r.state_violations_optimum as f64);
            c.metrics.insert(format!("{prefix}_samples"), r.samples as f64);
            if let Some((trc, opt)) = r.continuous_success {
                // descent: the same plans flown open loop in the RK4 thrust-hold plant
                c.metrics.insert(format!("{prefix}_success_rate_rk4_plant"), trc);
                c.metrics.insert(format!("{prefix}_success_rate_rk4_plant_optimum"), opt);
            }
            if let Some(last) = sweep_rows.last() {
                let first_k = |k: i64| sweep_rows.iter().find(|r| r.k == k);
                if let Some(t) = first_k(card.model.outer) {
                    // "K = 10 no worse than the trained K": both ends of the sweep in the card
                    c.metrics.insert(format!("{prefix}_sweep_trained_k_success_rate"), t.success);
                    c.metrics.insert(format!("{prefix}_sweep_trained_k_cost"), t.cost);
                }
                c.metrics.insert(format!("{prefix}_sweep_k{}_cost", last.k), last.cost);
                c.metrics.insert(format!("{prefix}_sweep_k{}_success_rate", last.k), last.success);
                c.metrics.insert(format!("{prefix}_sweep_k{}_monotone_fraction", last.k), last.monotone);
                c.metrics.insert(format!("{prefix}_sweep_k{}_terminal_error", last.k), last.terminal_error);
            }
            if let Some(tc) = &r.corrected {
                // the same controls after the terminal correction or the cost refinement (a
                // classical step, not the network)
                let w = if r.landing_error_median.is_some() { "with_terminal_correction" } else { "with_cost_refinement" };
                c.metrics.insert(format!("{prefix}_{w}_success_rate"), tc.success);
                c.metrics.insert(format!("{prefix}_{w}_cost_gap_mean"), tc.cost_gap.mean);
                c.metrics.insert(format!("{prefix}_{w}_control_violations"), tc.control_violations as f64);
                c.metrics.insert(format!("{prefix}_{w}_state_violations"), tc.state_violations as f64);
                c.metrics.insert(format!("{prefix}_{w}_gauss_newton_steps"), tc.mean_iterations);
            }
            let (_, cpath) = checkpoint::paths(stem);
            std::fs::write(&cpath, format!("# trc_control model card (written by trc train / trc eval --update-card)\n{}", serde_yaml::to_string(&c)?))?;
        }
    }
    Ok(())
}
