//! Training TRC: behaviour cloning on optimal demonstrations plus process supervision
//! (docs/method.md), AdamW with a cosine schedule, gradient clipping, optional TRM-style
//! truncation, validation every epoch with the best weights kept.
//!
//! Loss per batch, with u^(k) the iterates, J^(k) their training cost relative to the optimum
//! and sg() a stop-gradient:
//!
//! `L = (1/K) sum_k mean_i w_i |norm(u_i^(k)) - norm(u_i*)|^2 + lambda * (1/K) sum_k mean[ d_k + relu(d_k) ]`
//!     `+ w_T * (terminal loss, [`terminal_loss`]; descent and Van der Pol)`,
//! `d_k = J^(k) - sg J^(k-1)`, `w_i = 1` unless cost-relative cloning is on
//! ([`TrainConfig::bc_relative_floor`]).
//!
//! The second term rewards every iteration for lowering the cost relative to the previous one
//! (and doubly penalises an increase); lambda = 0 is pure cloning. The training cost J is the
//! problem's cost divided by the batch mean of J* (Van der Pol, double integrator: per-sample
//! ratios or logs let instances that start at their target dominate and destabilised training),
//! or for descent the fuel
//! `sum |T| dt / J*` plus `landing_weight * (|r_N - r_t|^2 / 1 m^2 + |v_N - v_t|^2 / (1 m/s)^2)`,
//! all rolled out in the model's in-loop simulator (the discretisation of the demonstrations).

pub mod eval;

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::config::{positive, ProblemKind};
use crate::data::Dataset;
use crate::error::ConfigError;
use crate::model::Trc;

/// Arithmetic of the training forward passes ([`TrainConfig::precision`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// Autocast to bfloat16 ([`crate::model::cuda_graph::with_autocast`]).
    Bf16,
}

impl Precision {
    /// Whether this is the default, f32.
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// Parses `fp32` or `bf16`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "fp32" | "f32" => Ok(Self::Fp32),
            "bf16" => Ok(Self::Bf16),
            other => Err(ConfigError::invalid("train.precision", format!("use fp32 or bf16, got `{other}`"))),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Epochs. Default 30.
    pub epochs: u64,
    /// Batch size. Default 64.
    pub batch_size: usize,
    /// Peak learning rate (AdamW). Default 1e-3.
    pub lr: f64,
    /// AdamW weight decay. Default 1e-4.
    pub weight_decay: f64,
    /// Linear warm-up steps before the cosine decay. Default 100.
    pub warmup_steps: u64,
    /// Process-supervision weight lambda (0 = pure behaviour cloning). Default 0.1.
    pub lambda: f64,
    /// Descent: weight of the squared landing error in the training cost. Default 0.01.
    pub landing_weight: f64,
    /// Weight `w_T` of the terminal loss on every iterate, `(1/K) sum_k mean log(1 + |e_N / s|^2)`,
    /// rolled out in the in-loop simulator (see [`terminal_scale`]): descent
    /// `e_N = (r_N - r_t, v_N - v_t)`, `s` = 1 m, 1 m/s; Van der Pol `e_N = x_N - x_t`,
    /// `s` = the success radius. Logarithmic, so it still pulls at misses well inside the
    /// success tolerance. Default 0.05. Ignored by the double integrator, whose LQR-type optimum
    /// does not reach its target (a terminal pull would fight the demonstrations).
    pub terminal_weight: f64,
    /// Cost-relative behaviour cloning (0 = off): weight sample i's cloning error by
    /// `mean J* / max(J*_i, floor * mean J*)` (normalised to mean 1 over the batch), so instances
    /// with a small optimal cost (started near the target), where a small control error is a
    /// large relative cost gap, are cloned more precisely; the floor bounds the raw weight at
    /// `1 / floor` (before the per-batch normalisation). Van der Pol and the double integrator
    /// only. The reported cloning MSE (`val_bc`) is then the weighted one. Default 0.
    pub bc_relative_floor: f64,
    /// Weight of a behaviour-cloning term on the InitialDecoder's guess u^(0) (0 = off: the
    /// decoder then learns only through the iterates after it). A guess near u* leaves the
    /// refinement a small, fuel-neutral correction (docs/refinement-log.md). Where a chain starts
    /// elsewhere ([`TrainConfig::start_mix`]) the term has no gradient for that sample. Default 0.
    pub init_weight: f64,
    /// TRM-style truncation: no gradient across outer iterations. Default false.
    pub truncate: bool,
    /// Operator training: the number of outer iterations of each training batch is drawn
    /// uniformly from `1..=outer_max` (0 = always the model's K, as the paper trains). Every
    /// iterate is supervised, so the shared module is trained as a step that can be applied
    /// again, not as a map that is right only after exactly K steps. Default 0.
    pub outer_max: i64,
    /// Operator training: the fraction of training chains that start away from the
    /// InitialDecoder's guess, from one of (equally likely) the optimum u* itself (then every
    /// iterate's cloning error is the fixed-point term `|step(u*) - u*|^2`), u* with structured
    /// noise (per-chunk offsets plus white noise, [`TrainConfig::start_noise`]), u* shifted in time
    /// by 1..5 steps with the last control held (what the receding horizon feeds back), another
    /// instance's u*, or the model's own last iterate for this sample from an earlier epoch (a
    /// replay buffer). 0 = every chain starts at the InitialDecoder. Default 0.
    pub start_mix: f64,
    /// Scale of the structured noise on perturbed starts, in normalised control units (each
    /// sample draws its own level uniformly in `[0, start_noise]`). Default 0.5.
    pub start_noise: f64,
    /// Gradient-norm clip. Default 1.0.
    pub grad_clip: f64,
    /// Arithmetic of the training forward passes: `fp32`, or `bf16` mixed precision (autocast:
    /// matmuls and linear layers in bfloat16, normalisation, reductions and the losses in f32,
    /// the f64 Gauss-Newton features untouched; weights, optimiser state and validation stay
    /// f32, so the shipped model is the same kind either way). For CUDA, where bf16 matmuls are
    /// several times faster; on the CPU it runs (tests) but is slower. Default fp32 (left out of
    /// the card's training settings then).
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Seed (weights init and batch order). Default 0.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-4,
            warmup_steps: 100,
            lambda: 0.1,
            // the monotone acceptance's merit uses the same weight (one value for both)
            landing_weight: crate::model::trc::ACCEPT_LANDING_WEIGHT,
            terminal_weight: 0.05,
            bc_relative_floor: 0.0,
            init_weight: 0.0,
            truncate: false,
            outer_max: 0,
            start_mix: 0.0,
            start_noise: 0.5,
            grad_clip: 1.0,
            precision: Precision::Fp32,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(ConfigError::invalid("train.epochs/batch_size", "must be >= 1"));
        }
        positive("train.lr", self.lr)?;
        crate::config::non_negative("train.weight_decay", self.weight_decay)?;
        crate::config::non_negative("train.lambda", self.lambda)?;
        crate::config::non_negative("train.landing_weight", self.landing_weight)?;
        crate::config::non_negative("train.terminal_weight", self.terminal_weight)?;
        crate::config::non_negative("train.bc_relative_floor", self.bc_relative_floor)?;
        crate::config::non_negative("train.init_weight", self.init_weight)?;
        crate::config::non_negative("train.start_noise", self.start_noise)?;
        if !(0.0..=1.0).contains(&self.start_mix) {
            return Err(ConfigError::invalid("train.start_mix", format!("a fraction in [0, 1], got {}", self.start_mix)));
        }
        if !(0..=64).contains(&self.outer_max) {
            return Err(ConfigError::invalid("train.outer_max", format!("0 (the model's K) or 1..=64, got {}", self.outer_max)));
        }
        positive("train.grad_clip", self.grad_clip)
    }

    /// The settings as strings for the model card.
    pub fn to_card(&self) -> BTreeMap<String, String> {
        let v = serde_yaml::to_value(self).expect("serialisable");
        v.as_mapping()
            .map(|m| m.iter().map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), serde_yaml::to_string(v).unwrap_or_default().trim().to_string())).collect())
            .unwrap_or_default()
    }
}

/// A dataset as f32 tensors on a device.
#[derive(Debug)]
pub struct Tensors {
    /// `[B, n]`.
    pub x0: Tensor,
    /// `[B, n]`.
    pub x_target: Tensor,
    /// `[B]`.
    pub t_go: Tensor,
    /// `[B, N, m]`.
    pub u_star: Tensor,
    /// `[B]` optimal cost J*.
    pub cost_star: Tensor,
}

impl Tensors {
    /// Converts a dataset (all samples).
    pub fn new(ds: &Dataset, device: Device) -> Self {
        let b = ds.len() as i64;
        let t = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_kind(Kind::Float).to_device(device);
        Self {
            x0: t(&ds.x0, &[b, ds.n as i64]),
            x_target: t(&ds.x_target, &[b, ds.n as i64]),
            t_go: t(&ds.t_go, &[b]),
            u_star: t(&ds.u, &[b, ds.horizon as i64, ds.m as i64]),
            cost_star: t(&ds.cost, &[b]),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> i64 {
        self.x0.size()[0]
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `idx` (a 1-D int64 tensor).
    pub fn select(&self, idx: &Tensor) -> Self {
        Self {
            x0: self.x0.index_select(0, idx),
            x_target: self.x_target.index_select(0, idx),
            t_go: self.t_go.index_select(0, idx),
            u_star: self.u_star.index_select(0, idx),
            cost_star: self.cost_star.index_select(0, idx),
        }
    }
}

/// Training cost of iterate trajectories relative to the optimum, `[B]` (see the module docs).
///
/// With `per_sample`, the quadratic costs (Van der Pol, double integrator) are divided by each
/// sample's J*; otherwise by the batch mean of J*, so an instance that starts next to its target
/// (J* near 0) cannot dominate the gradient. Descent's fuel is always divided per sample (J* is
/// never small there).
pub fn relative_cost(model: &Trc, u: &Tensor, x: &Tensor, batch: &Tensors, dt: &Tensor, landing_weight: f64, per_sample: bool) -> Tensor {
    let p = model.simulator().problem();
    let xt = batch.x_target.to_device(u.device());
    let j_star = batch.cost_star.to_device(u.device()).clamp_min(1e-9);
    match p.kind() {
        ProblemKind::Descent => {
            let n_steps = u.size()[1];
            let fuel = crate::problems::fuel_batch(u, dt);
            let e = x.select(1, n_steps).narrow(1, 0, 6) - xt.narrow(1, 0, 6);
            fuel / &j_star + (&e * &e).sum_dim_intlist(&[1i64][..], false, u.kind()) * landing_weight
        }
        _ if per_sample => p.cost_batch(x, u, &xt, dt) / j_star,
        _ => p.cost_batch(x, u, &xt, dt) / j_star.mean(j_star.kind()),
    }
}

/// Loss parts of one batch.
#[derive(Debug)]
pub struct LossParts {
    /// Total loss (differentiable scalar).
    pub total: Tensor,
    /// Behaviour-cloning MSE averaged over the iterates u^(1..K) (normalised units).
    pub bc: f64,
    /// Process-supervision term.
    pub process: f64,
    /// Terminal loss averaged over the iterates (0 for the double integrator).
    pub terminal: f64,
    /// Mean relative training cost of the final iterate.
    pub final_cost: f64,
    /// The final iterate u^(K) `[B, N, m]`, detached (the replay buffer keeps it).
    pub final_u: Tensor,
}

/// The scales of the terminal-loss error components for a problem, one per leading state
/// component (see [`TrainConfig::terminal_weight`]).
/// Descent: position and velocity, 1 m and 1 m/s; Van der Pol: the whole state, scaled by the
/// success radius (docs/problems.md); the double integrator: none.
pub fn terminal_scale(problem: &crate::config::ProblemConfig) -> Option<Vec<f64>> {
    match problem.name {
        ProblemKind::Descent => Some(vec![1.0; 6]),
        ProblemKind::Vanderpol => Some(vec![problem.vanderpol.success_radius; 2]),
        ProblemKind::DoubleIntegrator => None,
    }
}

/// Terminal loss of trajectories `x` `[B, N+1, n]` against targets `[B, n]`, a scalar:
/// `mean log(1 + sum_i ((x_N - x_t)_i / s_i)^2)` over the first `scale.len()` components (see
/// [`TrainConfig::terminal_weight`], [`terminal_scale`]).
pub fn terminal_loss(x: &Tensor, x_target: &Tensor, scale: &[f64]) -> Tensor {
    let n_steps = x.size()[1] - 1;
    let c = scale.len() as i64;
    let s = Tensor::from_slice(scale).to_kind(x.kind()).to_device(x.device());
    let e = (x.select(1, n_steps).narrow(1, 0, c) - x_target.to_device(x.device()).narrow(1, 0, c)) / s;
    (e.square().sum_dim_intlist(&[1i64][..], false, e.kind()) + 1.0).log().mean(Kind::Float)
}

/// Forward pass and loss on a batch: `outer` iterations (None = the model's K) from the
/// InitialDecoder, or from `start` `[B, N, m]` where given (operator training, [`Starts`]).
pub fn batch_loss(model: &Trc, batch: &Tensors, cfg: &TrainConfig, train: bool, start: Option<&Tensor>, outer: Option<i64>) -> LossParts {
    let k = outer.unwrap_or(model.config().outer);
    let out = model.forward_t(&batch.x0, &batch.x_target, &batch.t_go, start, k, train && cfg.truncate);
    let norm = model.normalizer();
    let u_star = batch.u_star.to_device(model.device());
    // deep supervision: every iterate u^(1..K) is pulled towards u*, so the shared module learns
    // a refinement step rather than a map that is only right after exactly K steps
    let target = norm.u(&u_star);
    let weight = (cfg.bc_relative_floor > 0.0 && model.simulator().problem().kind() != ProblemKind::Descent).then(|| {
        let j = batch.cost_star.to_device(model.device()).to_kind(Kind::Float);
        let mean = j.mean(Kind::Float).clamp_min(1e-12);
        let w = &mean / j.maximum(&(&mean * cfg.bc_relative_floor));
        (&w / w.mean(Kind::Float)).detach()
    });
    let sample_mse = |u: &Tensor| {
        let e = (norm.u(u) - &target).square().mean_dim(&[1i64, 2][..], false, Kind::Float); // [B]
        match &weight {
            Some(w) => (e * w).mean(Kind::Float),
            None => e.mean(Kind::Float),
        }
    };
    // `corrected`: the learned part (the predictor) is cloned; the corrector takes out the
    // terminal error it leaves, pulled to zero by the terminal loss on the corrected iterate
    let cloned: Vec<&Tensor> = if model.config().newton == crate::model::Newton::Corrected { out.u_pred.iter().collect() } else { out.u[1..].iter().collect() };
    let bc = cloned.iter().map(|u| sample_mse(u)).fold(Tensor::zeros([], (Kind::Float, model.device())), |a, b| a + b) / k as f64;
    let costs: Vec<Tensor> = (0..=k as usize).map(|i| relative_cost(model, &out.u[i], &out.x[i], batch, &out.dt, cfg.landing_weight, false)).collect();
    let mut process = Tensor::zeros([], (Kind::Float, model.device()));
    for i in 1..=k as usize {
        let d = &costs[i] - costs[i - 1].detach();
        process += (&d + d.relu()).mean(Kind::Float);
    }
    let process = process / k as f64;
    let mut total = &bc + &process * cfg.lambda;
    if cfg.init_weight > 0.0 {
        total += sample_mse(&out.u[0]) * cfg.init_weight;
    }
    let mut terminal = 0.0;
    if let (Some(scale), true) = (terminal_scale(model.problem_config()), cfg.terminal_weight > 0.0) {
        let t =
            (1..=k as usize).map(|i| terminal_loss(&out.x[i], &batch.x_target, &scale)).fold(Tensor::zeros([], (Kind::Float, model.device())), |a, b| a + b)
                / k as f64;
        terminal = t.double_value(&[]);
        total += t * cfg.terminal_weight;
    }
    LossParts {
        bc: bc.double_value(&[]),
        process: process.double_value(&[]),
        terminal,
        final_cost: costs[k as usize].mean(Kind::Float).double_value(&[]),
        final_u: out.u[k as usize].detach(),
        total,
    }
}

/// Per-epoch record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch (1-based).
    pub epoch: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss (same formula, no gradient).
    pub val_loss: f64,
    /// Validation behaviour-cloning MSE.
    pub val_bc: f64,
    /// Validation mean relative cost of the final iterate.
    pub val_cost: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch (training and validation) [s].
    #[serde(default)]
    pub wall_s: f64,
}

/// Where an interrupted training run stands (written after every epoch, read by `--resume`):
/// the weights are saved beside it. The AdamW moments are not saved (tch cannot export them), so
/// a resumed run restarts them: a warm restart at the scheduled learning rate. Neither is the
/// replay buffer of operator training ([`Starts`]): it refills during the resumed run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs finished.
    pub epoch: u64,
    /// Optimiser steps taken (the learning-rate schedule continues from here).
    pub step: u64,
    /// Best validation relative cost so far.
    pub best: f64,
    /// Epoch log so far.
    pub log: Vec<EpochLog>,
    /// Training wall time so far [s].
    pub train_time_s: f64,
}

/// The starting points of operator training ([`TrainConfig::start_mix`]): builds each batch's
/// u^(0) and keeps the replay buffer of the model's own iterates.
#[derive(Debug)]
pub struct Starts {
    replay: Tensor,
    filled: Tensor,
}

impl Starts {
    /// An empty replay buffer for a training set.
    pub fn new(train_set: &Tensors) -> Self {
        Self { replay: train_set.u_star.zeros_like(), filled: Tensor::zeros([train_set.len()], (Kind::Bool, train_set.u_star.device())) }
    }

    /// u^(0) `[B, N, m]` for the batch of training rows `idx`: the InitialDecoder's guess for a
    /// fraction `1 - start_mix`, the other kinds of [`TrainConfig::start_mix`] for the rest.
    pub fn sample(&self, model: &Trc, batch: &Tensors, idx: &Tensor, cfg: &TrainConfig) -> Tensor {
        let guess = model.initial_guess(&batch.x0, &batch.x_target, &batch.t_go);
        if cfg.start_mix <= 0.0 {
            return guess;
        }
        let dev = guess.device();
        let (b, n_steps, m) = guess.size3().expect("[B, N, m]");
        let norm = model.normalizer();
        let u_star = batch.u_star.to_device(dev).to_kind(guess.kind());
        let tokens = model.config().tokens;
        let chunk = n_steps / tokens;
        let opts = (guess.kind(), dev);
        // perturbed: per-chunk offsets + white noise, per-sample level in [0, start_noise]
        let level = Tensor::rand([b, 1, 1, 1], opts) * cfg.start_noise;
        let offsets = Tensor::randn([b, tokens, 1, m], opts).expand([b, tokens, chunk, m], false);
        let white = Tensor::randn([b, tokens, chunk, m], opts) * 0.3;
        let perturbed = norm.u_inv(&(norm.u(&u_star) + ((offsets + white) * level).view([b, n_steps, m])));
        // shifted by s = 1..5 steps, last control held
        let s: Tensor = (Tensor::rand([b], (Kind::Float, dev)) * 5.0).to_kind(Kind::Int64).clamp(0, 4) + 1;
        let pos = (Tensor::arange(n_steps, (Kind::Int64, dev)).unsqueeze(0) + s.unsqueeze(1)).clamp_max(n_steps - 1); // [B, N]
        let shifted = u_star.gather(1, &pos.unsqueeze(2).expand([b, n_steps, m], false), false);
        let other = u_star.index_select(0, &Tensor::randperm(b, (Kind::Int64, dev)));
        let replay = self.replay.index_select(0, idx).to_kind(guess.kind());
        let have_replay = self.filled.index_select(0, idx).view([b, 1, 1]);
        let replay = replay.where_self(&have_replay, &perturbed);
        // kind per sample: 0 decoder, 1 u*, 2 perturbed, 3 shifted, 4 other, 5 replay
        let r = Tensor::rand([b], (Kind::Float, dev));
        let pick = (Tensor::rand([b], (Kind::Float, dev)) * 5.0).to_kind(Kind::Int64).clamp(0, 4) + 1;
        let kind = pick.where_self(&r.lt(cfg.start_mix), &pick.zeros_like()).view([b, 1, 1]);
        let mut u0 = guess;
        for (k, cand) in [(1, u_star), (2, perturbed), (3, shifted), (4, other), (5, replay)] {
            u0 = cand.where_self(&kind.eq(k), &u0);
        }
        u0
    }

    /// Remembers the final iterates `u` `[B, N, m]` of the training rows `idx`.
    pub fn remember(&mut self, idx: &Tensor, u: &Tensor) {
        let _ = self.replay.index_copy_(0, idx, &u.detach().to_kind(self.replay.kind()));
        let _ = self.filled.index_fill_(0, idx, 1);
    }
}

/// Validation loss over a dataset (batches, no gradient): `(loss, bc, relative cost)`.
pub fn evaluate_loss(model: &Trc, data: &Tensors, cfg: &TrainConfig) -> (f64, f64, f64) {
    let _guard = tch::no_grad_guard();
    let (mut l, mut b, mut c, mut n) = (0.0, 0.0, 0.0, 0.0);
    let bs = cfg.batch_size as i64;
    let mut start = 0;
    while start < data.len() {
        let len = bs.min(data.len() - start);
        let idx = Tensor::arange_start(start, start + len, (Kind::Int64, data.x0.device()));
        let parts = batch_loss(model, &data.select(&idx), cfg, false, None, None);
        let w = len as f64;
        l += parts.total.double_value(&[]) * w;
        b += parts.bc * w;
        c += parts.final_cost * w;
        n += w;
        start += len;
    }
    (l / n, b / n, c / n)
}

/// Trains `model` (whose variables live in `vs`) and calls `on_best(epoch, log, vs)` whenever the
/// validation relative cost of the final iterate improves (the caller saves a checkpoint), and
/// `on_epoch(state, vs)` after every epoch (the caller saves the resume point; returning
/// `ControlFlow::Break(())` stops the run there, e.g. at the end of a wall-time budget, and
/// `--resume` continues it later). `resume` continues an interrupted run from its
/// [`ResumeState`] (the caller has loaded its weights into `vs`). Returns the epoch log (all
/// epochs run so far, the resumed ones included).
///
/// Batch order and the random starting points are seeded per epoch from `cfg.seed`, so a resumed
/// run draws the batches and start kinds the uninterrupted run would have; the replay buffer of
/// the model's own iterates ([`Starts`]) and the AdamW moments restart empty, so its training is
/// not identical to the uninterrupted run's.
///
/// # Errors
/// [`ConfigError`] for invalid settings or an empty dataset.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Trc,
    vs: &nn::VarStore,
    train_set: &Tensors,
    val_set: &Tensors,
    cfg: &TrainConfig,
    progress: bool,
    resume: Option<ResumeState>,
    mut on_best: impl FnMut(u64, &EpochLog, &nn::VarStore),
    mut on_epoch: impl FnMut(&ResumeState, &nn::VarStore) -> std::ops::ControlFlow<()>,
) -> Result<Vec<EpochLog>, ConfigError> {
    cfg.validate()?;
    if train_set.is_empty() || val_set.is_empty() {
        return Err(ConfigError::invalid("train data", "training and validation sets must not be empty"));
    }
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(vs, cfg.lr).map_err(|e| ConfigError::invalid("optimizer", e.to_string()))?;
    let n = train_set.len() as usize;
    let steps_per_epoch = n.div_ceil(cfg.batch_size) as u64;
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut state = resume.unwrap_or(ResumeState { best: f64::INFINITY, ..Default::default() });
    if state.epoch >= cfg.epochs {
        return Ok(state.log);
    }
    let bar = if progress { ProgressBar::new(total_steps) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("train [{bar:40}] {pos}/{len} {msg} (eta {eta})").expect("valid template").progress_chars("=> "));
    bar.set_position(state.step);
    let mut starts = Starts::new(train_set);
    let mut lr = cfg.lr;
    for epoch in state.epoch + 1..=cfg.epochs {
        let started = Instant::now();
        let epoch_seed = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch);
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed);
        tch::manual_seed(epoch_seed as i64);
        let mut order: Vec<i64> = (0..n as i64).collect();
        order.shuffle(&mut rng);
        let mut sum = 0.0;
        for chunk in order.chunks(cfg.batch_size) {
            let step = state.step;
            lr = if step < cfg.warmup_steps {
                cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64
            } else {
                let p = (step - cfg.warmup_steps) as f64 / (total_steps.saturating_sub(cfg.warmup_steps)).max(1) as f64;
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
            };
            opt.set_lr(lr);
            let idx = Tensor::from_slice(chunk).to_device(train_set.x0.device());
            let batch = train_set.select(&idx);
            let outer = (cfg.outer_max > 0).then(|| rng.gen_range(1..=cfg.outer_max));
            let start = (cfg.start_mix > 0.0).then(|| starts.sample(model, &batch, &idx, cfg));
            let dtype = (cfg.precision == Precision::Bf16).then_some(crate::model::cuda_graph::AutocastDtype::Bf16);
            let parts = crate::model::cuda_graph::with_autocast(model.device(), dtype, || batch_loss(model, &batch, cfg, true, start.as_ref(), outer))
                .map_err(|e| ConfigError::invalid("train.precision", format!("{e} (train with fp32)")))?;
            if !parts.total.double_value(&[]).is_finite() {
                return Err(ConfigError::invalid(
                    "train",
                    format!("non-finite loss at epoch {epoch}, step {step}: lower train.lr or raise the landing/normalisation floors"),
                ));
            }
            opt.backward_step_clip_norm(&parts.total, cfg.grad_clip);
            if cfg.start_mix > 0.0 {
                starts.remember(&idx, &parts.final_u);
            }
            sum += parts.total.double_value(&[]) * chunk.len() as f64;
            state.step += 1;
            bar.inc(1);
        }
        let (val_loss, val_bc, val_cost) = evaluate_loss(model, val_set, cfg);
        let wall_s = started.elapsed().as_secs_f64();
        let entry = EpochLog { epoch, train_loss: sum / n as f64, val_loss, val_bc, val_cost, lr, wall_s };
        bar.set_message(format!("epoch {epoch}: train {:.4} val {:.4} (bc {:.4}, J/J* {:.4})", entry.train_loss, val_loss, val_bc, val_cost));
        log::info!("epoch {epoch}: train loss {:.5}, val loss {val_loss:.5} (bc {val_bc:.5}, relative cost {val_cost:.4}), {wall_s:.1} s", entry.train_loss);
        if !val_loss.is_finite() {
            return Err(ConfigError::invalid("train", format!("non-finite validation loss at epoch {epoch}: lower train.lr")));
        }
        // Model selection by the quantity that matters: the final iterate's cost relative to the
        // optimum on validation data (the loss value also contains the process term, whose level
        // depends on how bad u^(0) is).
        if val_cost < state.best {
            state.best = val_cost;
            on_best(epoch, &entry, vs);
        }
        state.log.push(entry);
        state.epoch = epoch;
        state.train_time_s += wall_s;
        if on_epoch(&state, vs).is_break() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(state.log)
}

/// Timer helper for CLIs.
pub fn elapsed_s(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
