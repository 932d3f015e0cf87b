//! Policies: what refines a control sequence for the receding-horizon controller.
//!
//! A [`Policy`] turns a request (state `x`, target, time-to-go `t_go`, optional warm start
//! u^(0)) into a sequence of iterates u^(1..K), reporting each one as it finishes so the
//! controller can stop at its deadline and publish the best finished iterate (anytime use).
//! Implementations: [`TrcPolicy`] (the TRC network, K outer iterations), [`SolverPolicy`] (the
//! classical optimal-control solver; one "iterate", slow), [`ZemZevPolicy`] (the closed-form
//! descent law, a baseline) and [`ReplayPolicy`] (fixed iterates, for tests). Policies know nothing of the mission: the controller finishes whatever they return
//! ([`crate::control::mission::Mission::finish`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nalgebra::{DMatrix, DVector};
use tch::{Device, Kind};
use thiserror::Error;

use crate::config::{DeviceChoice, PolicyKind, ProblemConfig, TrcConfig};
use crate::model::checkpoint::{self, CheckpointError, ModelCard};
use crate::model::cuda_graph::GraphedRefinement;
use crate::model::Trc;
use crate::solvers::{self, Instance, OcpSolver, SolverSettings};
use crate::tensor;

/// One planning request, problem units (SI).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Current state x, length n.
    pub x0: DVector<f64>,
    /// Target state, length n.
    pub x_target: DVector<f64>,
    /// Time-to-go t_go [s]; step dt = t_go / N.
    pub t_go: f64,
    /// Warm start u^(0) `[N, m]` (the shifted previous solution), or `None` for the policy's own
    /// initial guess (TRC: the InitialDecoder).
    pub u_warm: Option<DMatrix<f64>>,
}

/// A finished refinement iterate.
#[derive(Debug, Clone, PartialEq)]
pub struct Iterate {
    /// Iteration index k (1-based; TRC: outer iteration).
    pub k: u32,
    /// Controls u^(k) `[N, m]`, admissible (projected).
    pub u: DMatrix<f64>,
}

/// A policy failure (the controller falls back; nothing is published from it).
#[derive(Debug, Error)]
pub enum PolicyError {
    /// Loading or matching the model failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The network produced something unusable (shape, NaN) or tch failed.
    #[error("TRC inference failed: {0}")]
    Inference(String),
    /// The classical solver failed.
    #[error("solver failed: {0}")]
    Solver(String),
}

/// Something that refines control sequences (TRC, or a classical solver).
pub trait Policy {
    /// Short name for logs and reports (e.g. `trc(models/descent, K=3)`).
    fn name(&self) -> String;
    /// The problem it was built for.
    fn problem(&self) -> &ProblemConfig;
    /// Iterates a full refinement produces (TRC: K; solver: 1).
    fn iterations(&self) -> u32;
    /// Refines from `req`, calling `on_iterate` after every finished iterate; stops early when it
    /// returns `false`.
    ///
    /// # Errors
    /// [`PolicyError`] when no iterate can be produced.
    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError>;
}

/// Artificial delays for deadline tests and drills (zero in operation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InjectedDelay {
    /// Sleep before the first iteration.
    pub before: Duration,
    /// Sleep after each iteration (before reporting it).
    pub between: Duration,
}

/// The TRC network as a policy: K outer iterations on the model's device, batch 1.
#[derive(Debug)]
pub struct TrcPolicy {
    vs: tch::nn::VarStore,
    model: Trc,
    card: ModelCard,
    outer: i64,
    stem: String,
    /// Injected delays (tests).
    pub delay: InjectedDelay,
    /// Run as CUDA graphs on a CUDA device ([`TrcPolicy::set_cuda_graph`]).
    cuda_graph: bool,
    /// Captured refinements, one per (batch size, warm-start mode), at most [`MAX_GRAPHS`].
    graphs: Vec<GraphedRefinement>,
    /// Why graphs were given up (a failed capture or replay): eager from then on.
    graph_off: Option<String>,
}

/// Captures a [`TrcPolicy`] keeps (each holds its own memory pool): the oldest is dropped first.
pub const MAX_GRAPHS: usize = 8;

impl TrcPolicy {
    /// Loads the checkpoint `stem` (`stem.safetensors` + `stem.yaml`) onto `device`, refusing a
    /// card whose problem differs from `problem`; `outer` = K at inference (`None`: the trained K).
    ///
    /// # Errors
    /// [`PolicyError::Checkpoint`] naming the file and the mismatch.
    pub fn load(stem: &Path, problem: &ProblemConfig, device: Device, outer: Option<u32>) -> Result<Self, PolicyError> {
        let (vs, model, card) = checkpoint::load(stem, device, Some(problem))?;
        let outer = outer.map(i64::from).unwrap_or(card.model.outer);
        Ok(Self::from_parts(vs, model, card, outer, &stem.display().to_string()))
    }

    /// A policy from a model already built (e.g. a preset with random weights, timed by `trc
    /// bench inference`): `vs` holds `model`'s weights, `card` describes it, `outer` = K,
    /// `name` labels it in logs.
    pub fn from_parts(vs: tch::nn::VarStore, model: Trc, card: ModelCard, outer: i64, name: &str) -> Self {
        Self { vs, model, card, outer, stem: name.to_string(), delay: InjectedDelay::default(), cuda_graph: true, graphs: Vec::new(), graph_off: None }
    }

    /// Whether to run the refinement as CUDA graphs on a CUDA device (default on;
    /// `node.cuda_graph`): each (batch size, warm-start mode) is captured on its first call
    /// ([`GraphedRefinement`]) and replayed afterwards; a failed capture is logged once and the
    /// policy runs eagerly from then on. No effect on the CPU.
    pub fn set_cuda_graph(&mut self, on: bool) {
        self.cuda_graph = on;
        if !on {
            self.graphs.clear();
        }
    }

    /// Why CUDA graphs are not used (`None` while they are, or may be once a call captures one):
    /// switched off, not a CUDA device, or the failed capture's message.
    pub fn graph_status(&self) -> Option<String> {
        if !self.cuda_graph {
            Some("switched off (node.cuda_graph: false)".into())
        } else if !self.model.device().is_cuda() {
            Some(format!("the model runs on {:?}", self.model.device()))
        } else {
            self.graph_off.clone()
        }
    }

    /// u^(0..K) `[B, N, m]` on the device by a graph replay (capturing on first use), or `None`
    /// where graphs are not used: the caller runs eagerly. Inputs as [`Trc::forward_t`], on the
    /// model's device. The results are the graph's static outputs: read them before the next call.
    fn graphed(&mut self, x0: &tch::Tensor, xt: &tch::Tensor, t_go: &tch::Tensor, warm: Option<&tch::Tensor>) -> Option<Vec<tch::Tensor>> {
        if self.graph_status().is_some() {
            return None;
        }
        let b = x0.size()[0];
        let at = match self.graphs.iter().position(|g| g.serves(b, warm.is_some())) {
            Some(i) => i,
            None => {
                let t0 = std::time::Instant::now();
                match GraphedRefinement::capture(&self.model, x0, xt, t_go, warm, self.outer) {
                    Ok(g) => {
                        log::info!(
                            "{}: CUDA graph captured for batch {b}{} in {:.0} ms",
                            self.stem,
                            if warm.is_some() { ", warm start" } else { "" },
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                        if self.graphs.len() >= MAX_GRAPHS {
                            self.graphs.remove(0);
                        }
                        self.graphs.push(g);
                        self.graphs.len() - 1
                    }
                    Err(e) => {
                        log::warn!("{}: {e}", self.stem);
                        self.graph_off = Some(e.to_string());
                        return None;
                    }
                }
            }
        };
        match self.graphs[at].run(x0, xt, t_go, warm) {
            Ok(u) => Some(u.iter().map(tch::Tensor::shallow_clone).collect()),
            Err(e) => {
                log::warn!("{}: {e}", self.stem);
                self.graph_off = Some(e.to_string());
                self.graphs.clear();
                None
            }
        }
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Runs `n` forward passes on a representative input (allocator and kernel warm-up; the first
    /// pass on CUDA is much slower than the rest).
    /// With CUDA graphs on a CUDA device it also captures both batch-1 graphs here (with and
    /// without a warm start, the latter fed the last plan), so that no capture happens in the
    /// control loop: at least one pass each, whatever `n`.
    pub fn warm_up(&mut self, x0: &DVector<f64>, x_target: &DVector<f64>, t_go: f64, n: usize) {
        let mut req = PlanRequest { x0: x0.clone(), x_target: x_target.clone(), t_go, u_warm: None };
        let delay = std::mem::take(&mut self.delay);
        let graphs = self.graph_status().is_none();
        let mut last = None;
        for _ in 0..if graphs { n.max(1) } else { n } {
            let _ = self.refine(&req, &mut |it| {
                last = Some(it.u);
                true
            });
        }
        if graphs {
            if let Some(u) = last {
                req.u_warm = Some(u);
                for _ in 0..n.clamp(1, 2) {
                    let _ = self.refine(&req, &mut |_| true);
                }
            }
        }
        self.delay = delay;
    }

    /// The model's device.
    pub fn device(&self) -> Device {
        self.model.device()
    }

    /// Runs the network in `kind` from now on (`Kind::Float`, as trained and shipped, or
    /// `Kind::Double`: float64 inference, slower, for checks where f32 rounding would hide what is
    /// compared, e.g. batched against batch-1 results in `tests/batch.rs`).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
        // the captured graphs read the old parameter storage, which set_kind frees
        self.graphs.clear();
        self.graph_off = None;
    }

    /// Refines B requests in one model call (several vehicles, one pass): the inputs are stacked
    /// to `x0`, `x_target` `[B, n]`, `t_go` `[B]` and u^(0) `[B, N, m]` on the model's device and
    /// run through K outer iterations together (the in-loop rollout batched on the device; no
    /// per-request loop). Requests without a warm start get the InitialDecoder's guess, those
    /// with one their own: each result equals [`Policy::refine`]'s last iterate for the same
    /// request alone, to float rounding (`tests/batch.rs`). Returns u^(K) `[N, m]` per request,
    /// in order; an empty slice gives an empty vector. Injected delays are not applied.
    ///
    /// # Errors
    /// [`PolicyError::Inference`] naming the request whose inputs have the wrong shape or whose
    /// result is not finite (one bad request fails the call: check inputs first, as the node does).
    pub fn refine_batch(&mut self, reqs: &[PlanRequest]) -> Result<Vec<DMatrix<f64>>, PolicyError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = tch::no_grad_guard();
        let dev = self.model.device();
        // each request checked alone first (a wrong shape is named, never a libtorch panic)
        let mut rows = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let x0 = tensor::from_dvector(&r.x0, dev).unsqueeze(0);
            let xt = tensor::from_dvector(&r.x_target, dev).unsqueeze(0);
            let t_go = tch::Tensor::from_slice(&[r.t_go]).to_kind(Kind::Float).to_device(dev);
            let warm = r.u_warm.as_ref().map(|u| tensor::from_dmatrix(u, dev).unsqueeze(0));
            self.model.check_inputs(&x0, &xt, &t_go, warm.as_ref()).map_err(|e| PolicyError::Inference(format!("request {i}: {e}")))?;
            rows.push((x0, xt, t_go, warm));
        }
        let x0 = tch::Tensor::cat(&rows.iter().map(|r| &r.0).collect::<Vec<_>>(), 0);
        let xt = tch::Tensor::cat(&rows.iter().map(|r| &r.1).collect::<Vec<_>>(), 0);
        let t_go = tch::Tensor::cat(&rows.iter().map(|r| &r.2).collect::<Vec<_>>(), 0);
        let warm = if reqs.iter().all(|r| r.u_warm.is_none()) {
            None
        } else {
            // rows without a warm start take the InitialDecoder's guess (already projected; the
            // projection of the warm start leaves it as it is)
            let guess = self.model.initial_guess(&x0, &xt, &t_go);
            Some(tch::Tensor::cat(
                &rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match &r.3 {
                        Some(u) => u.to_kind(guess.kind()),
                        None => guess.narrow(0, i as i64, 1),
                    })
                    .collect::<Vec<_>>(),
                0,
            ))
        };
        let iterates = match self.graphed(&x0, &xt, &t_go, warm.as_ref()) {
            Some(u) => u,
            None => self.model.forward_t(&x0, &xt, &t_go, warm.as_ref(), self.outer, false).u,
        };
        let u = iterates.last().ok_or_else(|| PolicyError::Inference("the model returned no iterate".into()))?.to_device(Device::Cpu);
        (0..reqs.len())
            .map(|i| match tensor::to_dmatrix(&u.get(i as i64)) {
                Ok(u) if u.iter().all(|v| v.is_finite()) => Ok(u),
                Ok(_) => Err(PolicyError::Inference(format!("request {i}: a NaN or infinite control"))),
                Err(e) => Err(PolicyError::Inference(format!("request {i}: {e}"))),
            })
            .collect()
    }
}

impl Policy for TrcPolicy {
    fn name(&self) -> String {
        format!("trc({}, K={})", self.stem, self.outer)
    }

    fn problem(&self) -> &ProblemConfig {
        self.model.problem_config()
    }

    fn iterations(&self) -> u32 {
        self.outer as u32
    }

    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        let _guard = tch::no_grad_guard();
        let dev = self.model.device();
        let x0 = tensor::from_dvector(&req.x0, dev).unsqueeze(0);
        let xt = tensor::from_dvector(&req.x_target, dev).unsqueeze(0);
        let t_go = tch::Tensor::from_slice(&[req.t_go]).to_kind(Kind::Float).to_device(dev);
        let warm = req.u_warm.as_ref().map(|u| tensor::from_dmatrix(u, dev).unsqueeze(0));
        self.model.check_inputs(&x0, &xt, &t_go, warm.as_ref()).map_err(|e| PolicyError::Inference(e.to_string()))?;
        if !self.delay.before.is_zero() {
            std::thread::sleep(self.delay.before);
        }
        let between = self.delay.between;
        let mut failure = None;
        let mut cb = |k: i64, u: &tch::Tensor| {
            if !between.is_zero() {
                std::thread::sleep(between);
            }
            match tensor::to_dmatrix(&u.squeeze_dim(0)) {
                Ok(u) if u.iter().all(|v| v.is_finite()) => on_iterate(Iterate { k: k as u32, u }),
                Ok(_) => {
                    failure = Some(format!("iterate {k} has a NaN or infinite control"));
                    false
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    false
                }
            }
        };
        // a CUDA graph runs all K iterations in one replay: its iterates are reported afterwards
        let graphed = if self.delay == InjectedDelay::default() { self.graphed(&x0, &xt, &t_go, warm.as_ref()) } else { None };
        match graphed {
            Some(us) => {
                for (k, u) in us.iter().enumerate().skip(1) {
                    if !cb(k as i64, u) {
                        break;
                    }
                }
            }
            None => {
                self.model.forward_anytime(&x0, &xt, &t_go, warm.as_ref(), self.outer, false, &mut cb);
            }
        }
        match failure {
            Some(f) => Err(PolicyError::Inference(f)),
            None => Ok(()),
        }
    }
}

/// The classical solver (QP / SCP / LCvx at the fixed t_go) as a policy: one iterate, the optimum.
pub struct SolverPolicy {
    problem: ProblemConfig,
    solver: Box<dyn OcpSolver>,
}

impl std::fmt::Debug for SolverPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolverPolicy").field("problem", &self.problem.name).finish()
    }
}

impl SolverPolicy {
    /// The problem's solver ([`solvers::for_problem`]).
    ///
    /// # Errors
    /// [`PolicyError::Solver`] for an invalid configuration.
    pub fn new(problem: &ProblemConfig, settings: SolverSettings) -> Result<Self, PolicyError> {
        let solver = solvers::for_problem(problem, settings).map_err(|e| PolicyError::Solver(e.to_string()))?;
        Ok(Self { problem: problem.clone(), solver })
    }
}

impl Policy for SolverPolicy {
    fn name(&self) -> String {
        format!("solver({})", self.problem.name)
    }

    fn problem(&self) -> &ProblemConfig {
        &self.problem
    }

    fn iterations(&self) -> u32 {
        1
    }

    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        let inst = Instance { x0: req.x0.clone(), x_target: req.x_target.clone(), t_go: Some(req.t_go) };
        let sol = self.solver.solve(&inst).map_err(|e| PolicyError::Solver(e.to_string()))?;
        on_iterate(Iterate { k: 1, u: sol.u });
        Ok(())
    }
}

/// The ZEM/ZEV guidance law as a policy (descent): one iterate, [`crate::baseline::zem_zev_plan`]
/// from the request's state towards its target at its t_go. The baseline of the closed-loop
/// benchmark, flown by the same controller (finish, gate, observer) as TRC.
#[derive(Debug)]
pub struct ZemZevPolicy {
    problem: ProblemConfig,
    descent: crate::problems::PoweredDescent,
}

impl ZemZevPolicy {
    /// The law for a descent problem.
    ///
    /// # Errors
    /// [`PolicyError::Solver`] when the problem is not descent or is invalid.
    pub fn new(problem: &ProblemConfig) -> Result<Self, PolicyError> {
        if problem.name != crate::config::ProblemKind::Descent {
            return Err(PolicyError::Solver(format!("the ZEM/ZEV policy is for descent, not {}", problem.name)));
        }
        let descent = crate::problems::PoweredDescent::new(problem.descent.clone()).map_err(|e| PolicyError::Solver(e.to_string()))?;
        Ok(Self { problem: problem.clone(), descent })
    }
}

impl Policy for ZemZevPolicy {
    fn name(&self) -> String {
        "zem_zev(descent)".into()
    }

    fn problem(&self) -> &ProblemConfig {
        &self.problem
    }

    fn iterations(&self) -> u32 {
        1
    }

    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        let u = crate::baseline::zem_zev_plan(&self.descent, &req.x0, &req.x_target, req.t_go, self.problem.descent.horizon);
        on_iterate(Iterate { k: 1, u });
        Ok(())
    }
}

impl Policy for Box<dyn Policy> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn problem(&self) -> &ProblemConfig {
        (**self).problem()
    }
    fn iterations(&self) -> u32 {
        (**self).iterations()
    }
    fn refine(&mut self, req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        (**self).refine(req, on_iterate)
    }
}

/// The device `choice` resolves to on this machine, and why (logged by the node).
///
/// # Errors
/// [`PolicyError::Inference`] for `cuda` when libtorch sees no CUDA device.
pub fn resolve_device(choice: DeviceChoice) -> Result<(Device, &'static str), PolicyError> {
    let cuda = tch::Cuda::is_available();
    match (choice, cuda) {
        (DeviceChoice::Cpu, _) => Ok((Device::Cpu, "node.device = cpu")),
        (DeviceChoice::Cuda, true) => Ok((Device::Cuda(0), "node.device = cuda")),
        (DeviceChoice::Cuda, false) => Err(PolicyError::Inference(
            "node.device = cuda but libtorch sees no CUDA device (use auto or cpu; check the driver and that the binary links libtorch_cuda)".into(),
        )),
        (DeviceChoice::Auto, true) => Ok((Device::Cuda(0), "node.device = auto and a CUDA device is available")),
        (DeviceChoice::Auto, false) => Ok((Device::Cpu, "node.device = auto and libtorch sees no CUDA device")),
    }
}

/// Timed batch-1 passes per device when `node.device = auto` finds a CUDA device.
pub const AUTO_TIMED_PASSES: usize = 7;

/// CUDA must be this much faster than the CPU at batch 1 to be chosen by `node.device = auto`
/// (its latency varies more: kernel launches, host syncs, a shared GPU): 0.8 = 20% faster.
pub const AUTO_CUDA_ADVANTAGE: f64 = 0.8;

/// The rule of `node.device = auto`, from the median batch-1 refinement time measured on each
/// device at start-up [ms] (`cuda_ms` `None`: no CUDA device): CUDA only when it is at least 20%
/// faster ([`AUTO_CUDA_ADVANTAGE`]), else the CPU; returns the device and the reason the node logs.
/// At batch 1 the small shipped network is launch-bound on a GPU (docs/gpu.md), so on most
/// machines this keeps the CPU.
pub fn auto_device_rule(cpu_ms: f64, cuda_ms: Option<f64>) -> (Device, String) {
    match cuda_ms {
        None => (Device::Cpu, "node.device = auto and libtorch sees no CUDA device".to_string()),
        Some(g) if g.is_finite() && (!cpu_ms.is_finite() || g < AUTO_CUDA_ADVANTAGE * cpu_ms) => (
            Device::Cuda(0),
            format!("node.device = auto: measured batch-1 refinement {g:.3} ms on CUDA against {cpu_ms:.3} ms on the CPU (CUDA chosen: at least 20% faster)"),
        ),
        Some(g) => (
            Device::Cpu,
            format!("node.device = auto: measured batch-1 refinement {cpu_ms:.3} ms on the CPU against {g:.3} ms on CUDA (CPU kept: CUDA is not at least 20% faster)"),
        ),
    }
}

/// Median wall time of `n` full refinements of `req` [ms] (CUDA work finishes before the plan
/// reaches the host, so the clock includes it); infinite when a refinement fails.
fn time_refine(p: &mut TrcPolicy, req: &PlanRequest, n: usize) -> f64 {
    let mut t: Vec<f64> = (0..n.max(1))
        .map(|_| {
            let t0 = std::time::Instant::now();
            match p.refine(req, &mut |_| true) {
                Ok(()) => t0.elapsed().as_secs_f64() * 1e3,
                Err(_) => f64::INFINITY,
            }
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Builds the policy a config asks for (`node.policy`, `node.model`, `node.device`, injected
/// delays) and warms it up with `node.warmup_passes` forward passes. Relative model paths are
/// tried from the working directory, then from `package_root`. Called on the inference thread
/// by [`crate::control::RecedingHorizon::from_config`].
///
/// # Errors
/// [`PolicyError`] when the model cannot be loaded or does not match the problem.
pub fn policy_from_config(cfg: &TrcConfig, package_root: Option<&Path>) -> Result<Box<dyn Policy>, PolicyError> {
    let node = &cfg.node;
    match node.policy {
        PolicyKind::Solver => return Ok(Box::new(SolverPolicy::new(&cfg.problem, SolverSettings::default())?)),
        PolicyKind::ZemZev => return Ok(Box::new(ZemZevPolicy::new(&cfg.problem)?)),
        PolicyKind::Trc => {}
    }
    let stem = if node.model.is_empty() { format!("models/{}", cfg.problem.name) } else { node.model.clone() };
    let mut path = std::path::PathBuf::from(&stem);
    if path.is_relative() && !checkpoint::paths(&path).1.exists() {
        if let Some(root) = package_root {
            path = root.join(&stem);
        }
    }
    if node.torch_threads > 0 {
        tch::set_num_threads(node.torch_threads.min(i32::MAX as u32) as i32);
    }
    let outer = (cfg.controller.outer > 0).then_some(cfg.controller.outer);
    let problem = cfg.problem.build().map_err(|e| PolicyError::Inference(e.to_string()))?;
    let inst = crate::data::sample_instance(&cfg.problem, 0, crate::data::Split::Val, 0);
    let req = PlanRequest { x0: inst.x0.clone(), x_target: problem.default_target(), t_go: problem.default_t_go(), u_warm: None };
    let passes = cfg.node.warmup_passes as usize;
    let (mut p, why) = if node.device == DeviceChoice::Auto && tch::Cuda::is_available() {
        // measured, not guessed: the same warm-up on both devices, then timed passes
        let mut cpu = TrcPolicy::load(&path, &cfg.problem, Device::Cpu, outer)?;
        cpu.warm_up(&req.x0, &req.x_target, req.t_go, passes);
        let cpu_ms = time_refine(&mut cpu, &req, AUTO_TIMED_PASSES);
        let cuda_ms = TrcPolicy::load(&path, &cfg.problem, Device::Cuda(0), outer).map(|mut g| {
            g.set_cuda_graph(node.cuda_graph); // captured in the warm-up, so the timing is the replay's
            g.warm_up(&req.x0, &req.x_target, req.t_go, passes.max(3));
            let ms = time_refine(&mut g, &req, AUTO_TIMED_PASSES);
            (g, ms)
        });
        match cuda_ms {
            Ok((g, ms)) => match auto_device_rule(cpu_ms, Some(ms)) {
                (Device::Cpu, why) => (cpu, why),
                (_, why) => (g, why),
            },
            Err(e) => (cpu, format!("node.device = auto: the model did not load on CUDA ({e}); CPU")),
        }
    } else {
        let (device, why) = resolve_device(node.device)?;
        let mut p = TrcPolicy::load(&path, &cfg.problem, device, outer)?;
        p.set_cuda_graph(node.cuda_graph); // a CUDA graph is captured in the warm-up, not in the loop
        p.warm_up(&req.x0, &req.x_target, req.t_go, passes);
        (p, why.to_string())
    };
    p.delay =
        InjectedDelay { before: Duration::from_secs_f64(node.inject_delay_ms * 1e-3), between: Duration::from_secs_f64(node.inject_delay_between_ms * 1e-3) };
    let graph = match p.graph_status() {
        None => "CUDA graph".to_string(),
        Some(why) if p.device().is_cuda() => format!("eager: {why}"),
        Some(_) => "eager".to_string(),
    };
    log::info!("policy: {} on {:?} ({why}; {graph})", p.name(), p.device());
    Ok(Box::new(p))
}

/// Delays a test can change while a [`ReplayPolicy`] runs on the inference thread.
#[derive(Debug, Default)]
pub struct DelayKnob {
    before_us: AtomicU64,
    between_us: AtomicU64,
}

impl DelayKnob {
    /// Sleep `before` the first iterate and `between` iterates (before reporting each).
    pub fn set(&self, before: Duration, between: Duration) {
        self.before_us.store(before.as_micros() as u64, Ordering::SeqCst);
        self.between_us.store(between.as_micros() as u64, Ordering::SeqCst);
    }

    fn before(&self) -> Duration {
        Duration::from_micros(self.before_us.load(Ordering::SeqCst))
    }

    fn between(&self) -> Duration {
        Duration::from_micros(self.between_us.load(Ordering::SeqCst))
    }
}

/// A policy that replays fixed iterates `u^(1..K)` (each `[N, m]`) whatever the request, with
/// delays from a [`DelayKnob`]: controller and mission tests need no trained weights.
#[derive(Debug)]
pub struct ReplayPolicy {
    problem: ProblemConfig,
    iterates: Vec<DMatrix<f64>>,
    knob: Arc<DelayKnob>,
}

impl ReplayPolicy {
    /// Replays `iterates` for `problem`.
    pub fn new(problem: &ProblemConfig, iterates: Vec<DMatrix<f64>>, knob: Arc<DelayKnob>) -> Self {
        Self { problem: problem.clone(), iterates, knob }
    }
}

impl Policy for ReplayPolicy {
    fn name(&self) -> String {
        format!("replay({} iterates)", self.iterates.len())
    }

    fn problem(&self) -> &ProblemConfig {
        &self.problem
    }

    fn iterations(&self) -> u32 {
        self.iterates.len() as u32
    }

    fn refine(&mut self, _req: &PlanRequest, on_iterate: &mut dyn FnMut(Iterate) -> bool) -> Result<(), PolicyError> {
        std::thread::sleep(self.knob.before());
        for (k, u) in self.iterates.iter().enumerate() {
            std::thread::sleep(self.knob.between());
            if !on_iterate(Iterate { k: k as u32 + 1, u: u.clone() }) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_cpu_unless_cuda_is_measured_clearly_faster() {
        assert_eq!(auto_device_rule(2.0, None).0, Device::Cpu, "no CUDA device");
        assert_eq!(auto_device_rule(2.0, Some(1.9)).0, Device::Cpu, "5% faster is within the GPU's jitter");
        assert_eq!(auto_device_rule(2.0, Some(1.5)).0, Device::Cuda(0), "25% faster");
        assert_eq!(auto_device_rule(2.0, Some(5.0)).0, Device::Cpu, "launch-bound at batch 1");
        assert_eq!(auto_device_rule(f64::INFINITY, Some(5.0)).0, Device::Cuda(0), "the CPU failed its passes");
        assert_eq!(auto_device_rule(2.0, Some(f64::INFINITY)).0, Device::Cpu, "CUDA failed its passes");
        let (_, why) = auto_device_rule(2.0, Some(1.5));
        assert!(why.contains("1.500 ms on CUDA") && why.contains("2.000 ms on the CPU"), "{why}");
    }
}
