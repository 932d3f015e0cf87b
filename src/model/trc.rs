//! The TRC network (docs/method.md; Jain & Linares 2025, §3).
//!
//! ```text
//! z0      = StateEncoder(x0, x_target, t_go)                      [B, d]
//! u^(0)   = InitialDecoder(z0)  or the warm start                  [B, N, m]
//! for k = 1..K:
//!   x^(k-1) = simulate(x0, u^(k-1))                                [B, N+1, n]
//!   z_err   = ErrorEncoder(chunk-end errors, terminal error)       [B, T, d]
//!   z_ctrl  = ControlEmbed(u^(k-1) per chunk)                      [B, T, d]
//!   z_ctx   = z0 + z_err + z_ctrl + pos
//!   n times: z_L = L_theta(z_L + z_H + z_ctx)
//!   z_H     = L_theta(z_H + z_L)
//!   u^(k)   = Project(u^(k-1) + ResidualDecoder(z_H, u^(k-1)))
//! ```
//!
//! **Tokens.** The horizon is cut into T chunks of N / T steps; token c carries chunk c's controls
//! and the state error at the chunk's end, so self-attention relates parts of the trajectory
//! (the authors' code attended over a single token, a linear map in disguise).
//!
//! **Error fed back** (every iteration, training and inference): per token, the state at the end
//! of its chunk minus the target, and the terminal error `x_N - x_target`, both scaled by the
//! state std (clamped to +-20).
//!
//! **Simulator in the loop**: the discrete model in which the demonstrations are optimal: RK4 for
//! Van der Pol and the double integrator; for descent the LCvx acceleration-hold model
//! ([`crate::problems::PoweredDescent::rollout_accel_hold_batch`]). Everything runs on the
//! model's device and dtype.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::active_set::HeldBounds;
use super::layers::{Block, Mlp};
use super::projection::project;
use super::{ModelConfig, Newton, Normalizer};
use crate::config::ProblemConfig;
use crate::error::ConfigError;
use crate::problems::ControlConstraint;
use crate::problems::Simulator;

/// Everything a forward pass produces (physical units).
#[derive(Debug)]
pub struct TrcOutput {
    /// Control iterates u^(0..K), each `[B, N, m]`, projected onto the admissible set.
    pub u: Vec<Tensor>,
    /// Simulated trajectories of each iterate, each `[B, N+1, n]`.
    pub x: Vec<Tensor>,
    /// z_H after each outer iteration, each `[B, T, d]`.
    pub z_h: Vec<Tensor>,
    /// z_L after each outer iteration, each `[B, T, d]`.
    pub z_l: Vec<Tensor>,
    /// Step dt = t_go / N, `[B]`.
    pub dt: Tensor,
    /// The predictors u'^(1..K) `[B, N, m]` of a predictor-corrector update ([`Newton::Step`],
    /// [`Newton::Corrected`]): the learned move before the Gauss-Newton corrector; empty for the
    /// other modes (there the iterate is the learned move).
    pub u_pred: Vec<Tensor>,
}

/// The TRC model.
#[derive(Debug)]
pub struct Trc {
    cfg: ModelConfig,
    problem_cfg: ProblemConfig,
    sim: Simulator,
    constraint: ControlConstraint,
    norm: Normalizer,
    n: i64,
    m: i64,
    horizon: i64,
    chunk: i64,
    state_enc: Mlp,
    init_dec: Mlp,
    err_enc: Mlp,
    ctrl_emb: nn::Linear,
    pos: Tensor,
    z_h0: Tensor,
    z_l0: Tensor,
    blocks: Vec<Block>,
    ln_out: nn::LayerNorm,
    res_dec: Mlp,
    newton_idx: Vec<usize>,
    newton_idx_t: Tensor,
    newton_scale: Tensor,
    /// `newton_scale` as f64 values (the per-sample CPU paths).
    newton_scale_f64: Vec<f64>,
    /// The problem has a terminal equality (descent): the acceptance also holds the terminal error.
    terminal_equality: bool,
    u_std_row: Tensor,
    device: Device,
    /// Run the accelerator's code path on the CPU too ([`Trc::set_device_path`]).
    force_device_path: bool,
}

/// Largest terminal-constraint Gauss-Newton step fed to / taken by the network, per control
/// component in normalised units (a trust radius: far from the target the linearisation is
/// poor). The step on a quadratic cost has none (its active set keeps it inside the box).
pub const NEWTON_TRUST: f64 = 10.0;

/// Landing-error weight of the monotone acceptance's merit, per m^2 and (m/s)^2: the weight of
/// the evaluation's J^(k) ([`crate::train::TrainConfig`]'s `landing_weight` default).
pub const ACCEPT_LANDING_WEIGHT: f64 = 0.01;
/// How far the monotone acceptance lets a candidate raise the terminal error, in the units of
/// [`newton_target`] (descent: 0.5 mm; half the evaluation's monotonicity tolerance).
pub const ACCEPT_ERROR_SLACK: f64 = 5e-4;

/// The terminal components the Newton features aim at, and the scale of each (the error is
/// measured in these units): descent's terminal equality (position and velocity, scaled by the
/// success tolerances, [`crate::problems::Problem::terminal_equality`]); otherwise the whole state
/// scaled by the success radius (Van der Pol, double integrator; docs/problems.md).
pub fn newton_target(problem: &ProblemConfig) -> Result<(Vec<usize>, Vec<f64>), ConfigError> {
    let p = problem.build()?;
    Ok(match p.terminal_equality() {
        Some(t) => t,
        None => {
            let r = match problem.name {
                crate::config::ProblemKind::Vanderpol => problem.vanderpol.success_radius,
                _ => problem.double_integrator.success_radius,
            };
            ((0..p.state_dim()).collect(), vec![r; p.state_dim()])
        }
    })
}

/// The Gauss-Newton quantities of one outer iteration ([`Newton`]): `g` `[B, N m]` (normalised
/// units, trust-limited), `G` `[B, c, N m]` and `A = G G^T + mu I` `[B, c, c]` (both f64).
struct NewtonStep {
    g: Tensor,
    /// `(G, A)` of a terminal-constraint step; `None` for a step on a quadratic cost (no
    /// constraint, nothing to project out).
    constraint: Option<(Tensor, Tensor)>,
}

impl NewtonStep {
    /// `P v = v - G^T A^-1 G v` for `v` `[B, N m]`: the part of a move with no first-order effect
    /// on the terminal error (differentiable in `v`).
    fn null_project(&self, v: &Tensor) -> Tensor {
        let Some((jac, a)) = &self.constraint else { return v.shallow_clone() };
        let vd = v.to_kind(Kind::Double);
        let (y, _) = Tensor::linalg_solve_ex(a, &jac.matmul(&vd.unsqueeze(2)), true, false); // unchecked: no host sync
        (vd - jac.transpose(1, 2).matmul(&y).squeeze_dim(2)).to_kind(v.kind())
    }
}

impl Trc {
    /// Builds the model's variables under `vs` (variable paths are the checkpoint keys).
    ///
    /// # Errors
    /// [`ConfigError`] if the architecture does not fit the problem.
    pub fn new(vs: &nn::Path<'_>, cfg: &ModelConfig, problem_cfg: &ProblemConfig, norm: Normalizer) -> Result<Self, ConfigError> {
        let sim = Simulator::new(problem_cfg)?;
        let p = sim.problem();
        let (n, m, horizon) = (p.state_dim() as i64, p.control_dim() as i64, p.horizon() as i64);
        cfg.validate(horizon)?;
        if norm.x_mean.len() != n as usize || norm.u_mean.len() != m as usize {
            return Err(ConfigError::invalid(
                "normalizer",
                format!("dimensions {}/{} do not match the problem's n = {n}, m = {m}", norm.x_mean.len(), norm.u_mean.len()),
            ));
        }
        let (d, h, t) = (cfg.latent, cfg.hidden, cfg.tokens);
        let chunk = horizon / t;
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let constraint = p.control_constraint();
        let feat = if cfg.newton == Newton::Off { 0 } else { chunk * m };
        let res_dec = Mlp::zero_out(vs / "residual_decoder", d + chunk * m + feat, h, chunk * m);
        let (newton_idx, scale) = newton_target(problem_cfg)?;
        let dev = vs.device();
        let u_std_row = Tensor::from_slice(&norm.u_std).to_kind(Kind::Float).repeat([horizon]).to_device(dev);
        Ok(Self {
            state_enc: Mlp::new(vs / "state_encoder", 2 * n + 1, h, d),
            init_dec: Mlp::zero_out(vs / "initial_decoder", d, h, horizon * m),
            err_enc: Mlp::new(vs / "error_encoder", 2 * n + feat, h, d),
            ctrl_emb: nn::linear(vs / "control_embed", chunk * m, d, Default::default()),
            pos: vs.var("pos", &[t, d], init),
            z_h0: vs.var("z_h0", &[t, d], init),
            z_l0: vs.var("z_l0", &[t, d], init),
            blocks: (0..cfg.layers).map(|i| Block::new(vs / "reason" / i, d, cfg.heads, cfg.mlp_ratio)).collect(),
            ln_out: nn::layer_norm(vs / "reason" / "ln_out", vec![d], Default::default()),
            res_dec,
            newton_idx_t: Tensor::from_slice(&newton_idx.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(dev),
            newton_idx,
            newton_scale: Tensor::from_slice(&scale).to_kind(Kind::Float).to_device(dev),
            newton_scale_f64: scale,
            terminal_equality: problem_cfg.build()?.terminal_equality().is_some(),
            u_std_row,
            cfg: cfg.clone(),
            problem_cfg: problem_cfg.clone(),
            sim,
            constraint,
            norm,
            n,
            m,
            horizon,
            chunk,
            device: vs.device(),
            force_device_path: false,
        })
    }

    /// Architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The problem it controls.
    pub fn problem_config(&self) -> &ProblemConfig {
        &self.problem_cfg
    }

    /// The in-loop simulator.
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Normalisation statistics.
    pub fn normalizer(&self) -> &Normalizer {
        &self.norm
    }

    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs the accelerator's code path on any device, the CPU included: the batched tensor
    /// Gauss-Newton step and acceptance instead of the per-sample f64 ones, descent's loop-free
    /// rollout and terminal Jacobian. For tests, which hold it equal to the CPU path; off by
    /// default (off the CPU that path is taken anyway).
    pub fn set_device_path(&mut self, on: bool) {
        self.force_device_path = on;
    }

    /// Whether [`Trc::set_device_path`] forces the accelerator's code path.
    pub fn device_path_forced(&self) -> bool {
        self.force_device_path
    }

    /// Whether the accelerator's code path runs ([`Trc::set_device_path`]).
    fn device_path(&self) -> bool {
        self.device != Device::Cpu || self.force_device_path
    }

    /// The dtype the model computes in (its weights').
    pub fn kind(&self) -> Kind {
        self.pos.kind()
    }

    /// The shared reasoning module L_theta on `[B, T, d]`: the blocks, then a LayerNorm so the
    /// latent states z_H / z_L stay bounded however many times the module is applied.
    fn reason(&self, xs: &Tensor) -> Tensor {
        self.ln_out.forward(&self.blocks.iter().fold(xs.shallow_clone(), |h, b| b.forward(&h)))
    }

    /// StateEncoder: `z0` `[B, 1, d]` from `x0`, `x_target` `[B, n]`, `t_go` `[B]` (model device and dtype).
    fn encode(&self, x0: &Tensor, xt: &Tensor, t_go: &Tensor) -> Tensor {
        let ctx_in = Tensor::cat(&[self.norm.x(x0), self.norm.x(xt), self.norm.t(t_go).unsqueeze(1)], 1);
        self.state_enc.forward(&ctx_in).unsqueeze(1)
    }

    /// InitialDecoder: the projected first guess u^(0) `[B, N, m]` from `z0` `[B, 1, d]`.
    fn decode_initial(&self, z0: &Tensor) -> Tensor {
        let b = z0.size()[0];
        let un = self.init_dec.forward(&z0.squeeze_dim(1)).view([b, self.horizon, self.m]);
        self.project_st(&self.norm.u_inv(&un))
    }

    /// The InitialDecoder's guess u^(0) `[B, N, m]` for a batch (inputs as in [`Trc::forward_t`]),
    /// differentiable: training mixes it with other starting points of the refinement.
    pub fn initial_guess(&self, x0: &Tensor, x_target: &Tensor, t_go: &Tensor) -> Tensor {
        let kind = self.pos.kind();
        let x0 = x0.to_device(self.device).to_kind(kind);
        let xt = x0.zeros_like() + x_target.to_device(self.device).to_kind(kind);
        let t_go = t_go.to_device(self.device).to_kind(kind);
        self.decode_initial(&self.encode(&x0, &xt, &t_go))
    }

    /// The Gauss-Newton step `g` `[B, N m]` (normalised units, trust-limited) of the sensitivity
    /// features at `u` `[B, N, m]` for `x0`, `x_target` `[B, n]`, `t_go` `[B]`, computed per
    /// sample in f64 (`per_sample_f64`, what the CPU runs) or as batched tensors (what a GPU
    /// runs); tests hold the two equal. For a quadratic cost (Van der Pol, double integrator) the
    /// step is one damped (Levenberg-Marquardt) Gauss-Newton step on the cost, the same on both
    /// paths and without a trust radius;
    /// if a sample's f64 system fails the batched form runs. Needs a model with `newton` not
    /// `off` only for its use, not for this call.
    pub fn newton_features(&self, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, u: &Tensor, per_sample_f64: bool) -> Tensor {
        let kind = self.pos.kind();
        let x0 = x0.to_device(self.device).to_kind(kind);
        let xt = x0.zeros_like() + x_target.to_device(self.device).to_kind(kind);
        let u = u.to_device(self.device).to_kind(kind);
        let dt = t_go.to_device(self.device).to_kind(kind) / self.horizon as f64;
        let traj = self.sim.rollout_on(&x0, &u, &dt, self.device_path());
        self.newton_step_by(&x0, &xt, &u, &dt, Some(&traj), per_sample_f64).g
    }

    /// The Gauss-Newton step of the terminal error at `u` `[B, N, m]` with rollout `traj`
    /// `[B, N+1, n]` ([`Newton`]; docs/method.md "Sensitivity features"): per sample in f64 on
    /// the CPU ([`super::newton`]), batched tensors elsewhere.
    fn newton_step(&self, x0: &Tensor, xt: &Tensor, u: &Tensor, dt: &Tensor, traj: &Tensor) -> NewtonStep {
        self.newton_step_by(x0, xt, u, dt, Some(traj), !self.device_path())
    }

    /// Per-sample f64 form of the terminal Gauss-Newton step ([`super::newton::gauss_newton_step`]),
    /// samples in parallel; `None` if a sample's system failed (the batched form then runs).
    fn newton_step_f64(&self, x0: &Tensor, xt: &Tensor, u: &Tensor, dt: &Tensor) -> Option<(Tensor, Tensor, Tensor)> {
        use rayon::prelude::*;
        let (b, n) = (x0.size()[0] as usize, self.n as usize);
        let (steps, m) = (self.horizon as usize, self.m as usize);
        let flat = crate::tensor::flat_f64;
        let (xv, tv, uv, dv) = (flat(x0)?, flat(xt)?, flat(u)?, flat(dt)?);
        let sigma = &self.norm.u_std;
        let setup = super::newton::GnSetup { sim: &self.sim, constraint: &self.constraint, idx: &self.newton_idx, scale: &self.newton_scale_f64, sigma };
        let per: Vec<Option<super::newton::GaussNewton>> = (0..b)
            .into_par_iter()
            .map(|i| {
                let x = nalgebra::DVector::from_column_slice(&xv[i * n..(i + 1) * n]);
                let t = nalgebra::DVector::from_column_slice(&tv[i * n..(i + 1) * n]);
                let um = nalgebra::DMatrix::from_row_slice(steps, m, &uv[i * steps * m..(i + 1) * steps * m]);
                super::newton::gauss_newton_step(&setup, &x, &t, &um, dv[i])
            })
            .collect();
        let per: Vec<super::newton::GaussNewton> = per.into_iter().collect::<Option<_>>()?;
        let c = self.newton_idx.len() as i64;
        let nm = (steps * m) as i64;
        let dev = u.device();
        let g: Vec<f64> = per.iter().flat_map(|s| s.g.iter().copied()).collect();
        let jac: Vec<f64> = per.iter().flat_map(|s| s.jac.transpose().as_slice().to_vec()).collect(); // row-major [c, N m]
        let a: Vec<f64> = per.iter().flat_map(|s| s.a.transpose().as_slice().to_vec()).collect();
        Some((
            Tensor::from_slice(&g).view([b as i64, nm]).to_device(dev),
            Tensor::from_slice(&jac).view([b as i64, c, nm]).to_device(dev),
            Tensor::from_slice(&a).view([b as i64, c, c]).to_device(dev),
        ))
    }

    /// `traj`: the rollout of `u` where the caller has it (computed here when the batched form needs it).
    fn newton_step_by(&self, x0: &Tensor, xt: &Tensor, u: &Tensor, dt: &Tensor, traj: Option<&Tensor>, per_sample_f64: bool) -> NewtonStep {
        let c = self.newton_idx.len() as i64;
        let nm = self.horizon * self.m;
        let kind = u.kind();
        let trust = |g: Tensor| {
            let peak = g.abs().amax(&[1i64][..], true).clamp_min(1e-12);
            (&g * (NEWTON_TRUST / peak).clamp_max(1.0)).to_kind(kind)
        };
        if let Some(du) = self.sim.cost_newton(x0, &u.detach(), dt, xt) {
            // a quadratic cost (Van der Pol, double integrator): the Gauss-Newton step on J
            let g = (du.view([-1, nm]) / self.u_std_row.to_kind(kind).view([1, nm])).to_kind(Kind::Double);
            // no trust radius: the step already respects the box (held and clamped components)
            return NewtonStep { g: g.to_kind(kind), constraint: None };
        }
        if per_sample_f64 {
            if let Some((g, jac, a)) = self.newton_step_f64(x0, xt, u, dt) {
                return NewtonStep { g: trust(g), constraint: Some((jac, a)) };
            }
        }
        let scale = self.newton_scale.to_kind(kind);
        let traj = traj.map_or_else(|| self.sim.rollout_on(x0, &u.detach(), dt, self.device_path()), Tensor::shallow_clone);
        // [B, c, N m], physical; on the accelerator's path from the rollout just made (descent)
        let batched = if self.device_path() { self.sim.terminal_jacobian_from(&traj.detach(), &u.detach(), dt, &self.newton_idx) } else { None };
        let jac = batched.unwrap_or_else(|| self.sim.terminal_jacobian_on(x0, &u.detach(), dt, &self.newton_idx, self.device_path()));
        let jac = (jac / scale.view([1, c, 1]) * self.u_std_row.to_kind(kind).view([1, 1, nm])).to_kind(Kind::Double);
        let e = ((traj.select(1, self.horizon).detach() - xt).index_select(1, &self.newton_idx_t) / &scale).to_kind(Kind::Double);
        let eye = Tensor::eye(c, (Kind::Double, u.device())).unsqueeze(0);
        let sigma = self.u_std_row.to_kind(Kind::Double).view([1, nm]);
        let u_d = u.detach().to_kind(Kind::Double);
        let u_flat = u_d.view([-1, nm]);
        // active set (grown over four passes): the bounds the tentative step pushes against or
        // crosses are held, and the step recomputed without their directions; the bounds'
        // geometry at `u` is computed once (super::active_set)
        let bounds = HeldBounds::new(&self.constraint, &u_d, &self.u_std_row.narrow(0, 0, self.m));
        let mut held = bounds.none_held();
        let mut last = None;
        for pass in 0..4 {
            // nothing is held in the first pass
            let jt = if pass == 0 { jac.shallow_clone() } else { bounds.tangent(&jac, &held) };
            let a = jt.matmul(&jt.transpose(1, 2));
            let mu = a.diagonal(0, 1, 2).mean_dim(&[1i64][..], true, Kind::Double) * 1e-6 + 1e-12; // [B, 1]
            let a = a + &eye * mu.unsqueeze(2);
            // `_ex` without its error check: the checked form reads the status back to the host
            // (a synchronisation on CUDA, and not capturable in a CUDA graph); `a` is regularised
            let (y, _) = Tensor::linalg_solve_ex(&a, &e.unsqueeze(2), true, false);
            let g = -jt.transpose(1, 2).matmul(&y).squeeze_dim(2); // [B, N m]
            if pass < 3 {
                let probe = (&u_flat + &g * &sigma).view([-1, self.horizon, self.m]);
                held = bounds.grow(&held, &probe);
            }
            last = Some((g, jt, a));
        }
        let (g, jac, a) = last.expect("three passes");
        NewtonStep { g: trust(g), constraint: Some((jac, a)) }
    }

    /// Refines controls for a batch.
    ///
    /// `x0`, `x_target` `[B, n]`, `t_go` `[B]` (any device / float dtype; moved to the model's);
    /// `u_warm` `[B, N, m]` replaces the InitialDecoder's u^(0) (receding-horizon warm start);
    /// `outer` is K (may exceed the K trained with: the weights are shared). With `truncate`, each
    /// outer iteration starts from detached inputs, so gradients stay within one iteration
    /// (TRM-style truncation, Jolicoeur-Martineau 2025).
    ///
    /// # Panics
    /// If the input shapes do not match the problem (callers check; see [`Trc::check_inputs`]).
    pub fn forward_t(&self, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, u_warm: Option<&Tensor>, outer: i64, truncate: bool) -> TrcOutput {
        self.forward_anytime(x0, x_target, t_go, u_warm, outer, truncate, &mut |_, _| true)
    }

    /// [`Trc::forward_t`] with a callback after every outer iteration: `on_iterate(k, u^(k))`
    /// (k = 1..K, `u^(k)` `[B, N, m]`, projected) returns `false` to stop refining (the anytime
    /// use of the receding-horizon controller: a deadline stops the loop between iterations).
    /// The output then holds the iterates finished so far.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_anytime(
        &self,
        x0: &Tensor,
        x_target: &Tensor,
        t_go: &Tensor,
        u_warm: Option<&Tensor>,
        outer: i64,
        truncate: bool,
        on_iterate: &mut dyn FnMut(i64, &Tensor) -> bool,
    ) -> TrcOutput {
        let kind = self.pos.kind();
        let x0 = x0.to_device(self.device).to_kind(kind);
        let xt = x0.zeros_like() + x_target.to_device(self.device).to_kind(kind);
        let t_go = t_go.to_device(self.device).to_kind(kind);
        let b = x0.size()[0];
        let (t, d) = (self.cfg.tokens, self.cfg.latent);
        let dt = &t_go / self.horizon as f64;
        let z0 = self.encode(&x0, &xt, &t_go); // [B, 1, d]
        let mut u = match u_warm {
            Some(w) => self.project_st(&w.to_device(self.device).to_kind(kind)),
            None => self.decode_initial(&z0),
        };
        let mut z_h = self.z_h0.unsqueeze(0).expand([b, t, d], false).contiguous();
        let mut z_l = self.z_l0.unsqueeze(0).expand([b, t, d], false).contiguous();
        let ends = Tensor::arange_start_step(self.chunk, self.horizon + 1, self.chunk, (Kind::Int64, self.device));
        let mut out = TrcOutput { u: vec![u.shallow_clone()], x: Vec::new(), z_h: Vec::new(), z_l: Vec::new(), dt: dt.shallow_clone(), u_pred: Vec::new() };
        for k in 0..outer {
            if truncate && k > 0 {
                u = u.detach();
                z_h = z_h.detach();
                z_l = z_l.detach();
            }
            let traj = self.sim.rollout_on(&x0, &u, &dt, self.device_path());
            let e_chunk = self.norm.dx(&(traj.index_select(1, &ends) - xt.unsqueeze(1))).clamp(-20.0, 20.0);
            let e_term = self.norm.dx(&(traj.select(1, self.horizon) - &xt)).clamp(-20.0, 20.0).unsqueeze(1).expand([b, t, self.n], false);
            let newton = (self.cfg.newton != Newton::Off).then(|| self.newton_step(&x0, &xt, &u, &dt, &traj));
            let g_tok = newton.as_ref().map(|nw| nw.g.view([b, t, self.chunk * self.m]));
            let mut err_in = vec![e_chunk, e_term];
            err_in.extend(g_tok.iter().map(Tensor::shallow_clone));
            let z_err = self.err_enc.forward(&Tensor::cat(&err_in, 2));
            let un = self.norm.u(&u).view([b, t, self.chunk * self.m]);
            let z_ctx = &z0 + z_err + self.ctrl_emb.forward(&un) + &self.pos;
            for _ in 0..self.cfg.inner {
                z_l = self.reason(&(&z_l + &z_h + &z_ctx));
            }
            z_h = self.reason(&(&z_h + &z_l));
            let mut dec_in = vec![z_h.shallow_clone(), un];
            dec_in.extend(g_tok);
            let du = self.res_dec.forward(&Tensor::cat(&dec_in, 2)).view([b, self.horizon * self.m]);
            out.x.push(traj.shallow_clone());
            u = match (&newton, self.cfg.newton) {
                (Some(nw), Newton::Step | Newton::Corrected) => {
                    // predictor: the learned move (for `Step` within the terminal constraint's
                    // tangent space); corrector: a Gauss-Newton step from where it landed
                    let mv = if self.cfg.newton == Newton::Step { nw.null_project(&du) } else { du };
                    let moved = self.project_st(&(&u + self.norm.du_inv(&mv.view([b, self.horizon, self.m]))));
                    // no rollout of `moved` here: the f64 step rolls out by itself, the batched
                    // one rolls out when it runs
                    let corr = self.newton_step_by(&x0, &xt, &moved, &dt, None, !self.device_path());
                    let next = self.project_st(&(&moved + self.norm.du_inv(&corr.g.view([b, self.horizon, self.m]))));
                    out.u_pred.push(moved);
                    if self.cfg.accept {
                        // globalisation: the Gauss-Newton step alone is the fallback candidate
                        let gn_only = self.project_st(&(&u + self.norm.du_inv(&nw.g.view([b, self.horizon, self.m]))));
                        // with the joint acceptance, where neither passes: the cost step that
                        // does not raise the terminal error
                        self.accept_best(&x0, &xt, &dt, &u, &traj, &[next, gn_only], self.cfg.joint_monotone)
                    } else {
                        next
                    }
                }
                _ => {
                    let next = self.project_st(&(&u + self.norm.du_inv(&du.view([b, self.horizon, self.m]))));
                    if self.cfg.accept {
                        // globalisation without a corrector: the learned iterate is the only
                        // candidate; a sample keeps its current plan where the move raises J
                        self.accept_best(&x0, &xt, &dt, &u, &traj, &[next], false)
                    } else {
                        next
                    }
                }
            };
            out.u.push(u.shallow_clone());
            out.z_h.push(z_h.shallow_clone());
            out.z_l.push(z_l.shallow_clone());
            if !on_iterate(k + 1, &u) {
                break;
            }
        }
        out.x.push(self.sim.rollout_on(&x0, &u, &dt, self.device_path()));
        out
    }

    /// Merit and terminal error per sample `[B]`, `[B]` of controls `u` `[B, N, m]` with rollout
    /// `traj` `[B, N+1, n]`: descent, fuel `sum |u_k| dt` over `fuel_ref` plus
    /// [`ACCEPT_LANDING_WEIGHT`] `|(r_N, v_N) - target|^2` (the evaluation's J^(k) / J* with the
    /// current iterate's fuel for J*, docs/method.md "Monotone acceptance"); otherwise the
    /// problem's cost ([`crate::problems::Problem::cost_batch`]). The terminal error is in the
    /// units of [`newton_target`]. Detached.
    fn merit(&self, u: &Tensor, traj: &Tensor, xt: &Tensor, dt: &Tensor, fuel_ref: Option<&Tensor>) -> (Tensor, Tensor) {
        let (u, traj) = (u.detach(), traj.detach());
        let last = traj.select(1, self.horizon);
        let kind = u.kind();
        let scale = self.newton_scale.to_kind(kind);
        let e = ((&last - xt).index_select(1, &self.newton_idx_t) / &scale).square().sum_dim_intlist(&[1i64][..], false, kind).sqrt();
        let merit = if self.problem_cfg.name == crate::config::ProblemKind::Descent {
            let fuel = crate::problems::fuel_batch(&u, dt);
            let d = (&last - xt).narrow(1, 0, 6);
            let reference = fuel_ref.map_or_else(|| fuel.shallow_clone(), Tensor::shallow_clone).clamp_min(1e-9);
            fuel / reference + (&d * &d).sum_dim_intlist(&[1i64][..], false, kind) * ACCEPT_LANDING_WEIGHT
        } else {
            self.sim.problem().cost_batch(&traj, &u, xt, dt)
        };
        (merit.detach(), e.detach())
    }

    /// Monotone acceptance ([`ModelConfig::accept`]): per sample, the candidate `[B, N, m]` with
    /// the lowest merit among those that lower the merit of `u` (rollout `traj`) without raising
    /// its terminal error (beyond [`ACCEPT_ERROR_SLACK`]; where [`Trc::error_gate`] holds);
    /// where none does and `fallback` is set ([`ModelConfig::joint_monotone`]), the
    /// error-holding cost step from `u` ([`crate::problems::cost_lm_step_error_held`], computed
    /// only for those samples), which passes a stricter form of the same test (a relative
    /// decrease of `J`, and a successful terminal state kept successful) or is not taken; else
    /// `u` itself.
    #[allow(clippy::too_many_arguments)]
    fn accept_best(&self, x0: &Tensor, xt: &Tensor, dt: &Tensor, u: &Tensor, traj: &Tensor, candidates: &[Tensor], fallback: bool) -> Tensor {
        if !self.device_path() {
            if let Some((choice, held)) = self.accept_choice_f64(x0, xt, dt, u, candidates, fallback) {
                let choice = Tensor::from_slice(&choice).view([-1, 1, 1]);
                let picked = candidates.iter().enumerate().fold(u.shallow_clone(), |best, (i, c)| c.where_self(&choice.eq(i as i64 + 1), &best));
                return match held {
                    Some(h) => h.to_kind(u.kind()).to_device(u.device()).where_self(&choice.eq(candidates.len() as i64 + 1), &picked),
                    None => picked,
                };
            }
        }
        let fuel_ref = if self.problem_cfg.name == crate::config::ProblemKind::Descent { Some(crate::problems::fuel_batch(&u.detach(), dt)) } else { None };
        let (mut best_m, best_e) = self.merit(u, traj, xt, dt, fuel_ref.as_ref());
        let mut best = u.shallow_clone();
        let mut none_taken = Tensor::ones([u.size()[0]], (Kind::Bool, u.device()));
        // every candidate rolled out and scored in one batch of [n B] (one rollout's kernels
        // instead of n; per-sample arithmetic, so the same values)
        let b = u.size()[0];
        let rep = |t: &Tensor| Tensor::cat(&candidates.iter().map(|_| t.shallow_clone()).collect::<Vec<_>>(), 0);
        let all = Tensor::cat(&candidates.iter().map(Tensor::detach).collect::<Vec<_>>(), 0);
        let tr_all = self.sim.rollout_on(&rep(x0), &all, &rep(dt), self.device_path());
        let (m_all, e_all) = self.merit(&all, &tr_all, &rep(xt), &rep(dt), fuel_ref.as_ref().map(rep).as_ref());
        for (i, c) in candidates.iter().enumerate() {
            let (m, e) = (m_all.narrow(0, i as i64 * b, b), e_all.narrow(0, i as i64 * b, b));
            let lower = m.lt_tensor(&best_m);
            let take = if self.error_gate() { lower.logical_and(&e.le_tensor(&(&best_e + ACCEPT_ERROR_SLACK))) } else { lower };
            none_taken = none_taken.logical_and(&take.logical_not());
            best = c.where_self(&take.view([-1, 1, 1]), &best);
            best_m = m.where_self(&take, &best_m);
        }
        if fallback {
            let (idx, scale) = (&self.newton_idx, &self.newton_scale_f64);
            let rows: Option<Vec<bool>> = Vec::<bool>::try_from(none_taken.to_device(Device::Cpu)).ok();
            if let Some(h) = self.sim.cost_newton_error_held(x0, &u.detach(), dt, xt, idx, scale, ACCEPT_ERROR_SLACK, rows.as_deref()) {
                // computed only where no candidate was taken; the step itself holds J and the
                // error (it returns `u` where it finds none)
                best = h.where_self(&none_taken.view([-1, 1, 1]), &best);
            }
        }
        best
    }

    /// Whether the acceptance also refuses a rise of the terminal error: for a terminal equality
    /// (descent), and for any problem when the learned iterate is the only candidate (`off`,
    /// `input`), so that both the cost and the terminal error are non-increasing in k. With a
    /// Gauss-Newton step on a quadratic tracking cost in the loop (Van der Pol, double integrator
    /// in `step` / `corrected`) the merit alone decides unless [`ModelConfig::joint_monotone`]
    /// holds: the cost already prices the terminal state, and without the error-holding cost
    /// step as the fallback the gate stalled those chains (docs/refinement-log.md, `vdp_cai`).
    fn error_gate(&self) -> bool {
        self.terminal_equality || self.cfg.joint_monotone || matches!(self.cfg.newton, Newton::Off | Newton::Input)
    }

    /// [`Trc::accept_best`]'s choice per sample in f64 on the CPU (0 = keep `u`, i = candidate
    /// i - 1): the same merit and error as [`Trc::merit`], one nalgebra rollout per candidate
    /// instead of hundreds of small tensor kernels (the receding-horizon controller's batch 1).
    /// `None` if a rollout fails (the batched form then runs).
    /// With `fallback`, a sample that keeps `u` tries the error-holding cost step (choice
    /// `candidates.len() + 1`); the second value then holds those controls `[B, N, m]` (`u` for
    /// the other samples).
    fn accept_choice_f64(
        &self,
        x0: &Tensor,
        xt: &Tensor,
        dt: &Tensor,
        u: &Tensor,
        candidates: &[Tensor],
        fallback: bool,
    ) -> Option<(Vec<i64>, Option<Tensor>)> {
        use nalgebra::{DMatrix, DVector};
        use rayon::prelude::*;
        let flat = crate::tensor::flat_f64;
        let (b, n) = (x0.size()[0] as usize, self.n as usize);
        let (steps, m) = (self.horizon as usize, self.m as usize);
        let (xv, tv, dv) = (flat(x0)?, flat(xt)?, flat(dt)?);
        let us: Vec<Vec<f64>> = std::iter::once(u).chain(candidates).map(flat).collect::<Option<_>>()?;
        let scale = &self.newton_scale_f64;
        let descent = self.problem_cfg.name == crate::config::ProblemKind::Descent;
        let gate = self.error_gate();
        let (sim, idx) = (&self.sim, &self.newton_idx);
        let p = sim.problem();
        let fuel = |uk: &DMatrix<f64>, dt: f64| uk.row_iter().map(|r| r.norm().max(1e-10)).sum::<f64>() * dt;
        (0..b)
            .into_par_iter()
            .map(|i| {
                let x = DVector::from_column_slice(&xv[i * n..(i + 1) * n]);
                let t = DVector::from_column_slice(&tv[i * n..(i + 1) * n]);
                let u0 = DMatrix::from_row_slice(steps, m, &us[0][i * steps * m..(i + 1) * steps * m]);
                let fuel_ref = fuel(&u0, dv[i]).max(1e-9);
                let score = |uk: &DMatrix<f64>| -> Option<(f64, f64)> {
                    let tr = sim.rollout_one(&x, uk, dv[i]).ok()?;
                    let last = tr.row(steps);
                    let e = idx.iter().zip(scale).map(|(&c, s)| ((last[c] - t[c]) / s).powi(2)).sum::<f64>().sqrt();
                    let merit = if descent {
                        let d2 = (0..6).map(|c| (last[c] - t[c]).powi(2)).sum::<f64>();
                        fuel(uk, dv[i]) / fuel_ref + ACCEPT_LANDING_WEIGHT * d2
                    } else {
                        p.cost(&tr, uk, &t, dv[i])
                    };
                    Some((merit, e))
                };
                let (mut best_m, e0) = score(&u0)?;
                let mut pick = 0i64;
                for (j, cv) in us[1..].iter().enumerate() {
                    let uk = DMatrix::from_row_slice(steps, m, &cv[i * steps * m..(i + 1) * steps * m]);
                    let (mk, ek) = score(&uk)?;
                    if mk < best_m && (!gate || ek <= e0 + ACCEPT_ERROR_SLACK) {
                        (best_m, pick) = (mk, j as i64 + 1);
                    }
                }
                if pick == 0 && fallback {
                    // the step checks J and the error itself, in the same units and slack
                    if let Ok(Some(h)) = crate::problems::cost_lm_step_error_held(p, &x, &u0, dv[i], &t, idx, scale, ACCEPT_ERROR_SLACK) {
                        return Some((us.len() as i64, Some(h)));
                    }
                }
                Some((pick, None))
            })
            .collect::<Option<Vec<_>>>()
            .map(|per| {
                let any = per.iter().any(|(_, h)| h.is_some());
                let held = any.then(|| {
                    let mut all = us[0].clone();
                    for (i, (_, h)) in per.iter().enumerate() {
                        if let Some(h) = h {
                            all[i * steps * m..(i + 1) * steps * m].copy_from_slice(h.transpose().as_slice());
                        }
                    }
                    Tensor::from_slice(&all).view([b as i64, steps as i64, m as i64])
                });
                (per.into_iter().map(|(c, _)| c).collect(), held)
            })
    }

    /// Projection with a straight-through gradient: the value is exactly feasible, the backward
    /// pass is the identity (a clip's zero gradient would stop learning wherever u* sits on a
    /// bound, as bang-bang optima do).
    fn project_st(&self, raw: &Tensor) -> Tensor {
        raw + (project(raw, &self.constraint) - raw).detach()
    }

    /// Checks batch shapes before [`Trc::forward_t`].
    ///
    /// # Errors
    /// [`crate::error::ProblemError::Shape`] naming the input.
    pub fn check_inputs(&self, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, u_warm: Option<&Tensor>) -> Result<(), crate::error::ProblemError> {
        let kind = self.problem_cfg.name;
        let b = x0.size().first().copied().unwrap_or(0);
        let bad = |what, expected: String, got: Vec<i64>| crate::problems::shape_err(kind, what, expected, format!("{got:?}"));
        if x0.size() != [b, self.n] {
            return Err(bad("x0", format!("[B, {}]", self.n), x0.size()));
        }
        if x_target.size() != [b, self.n] && x_target.size() != [self.n] {
            return Err(bad("x_target", format!("[B, {}] or [{}]", self.n, self.n), x_target.size()));
        }
        if t_go.size() != [b] {
            return Err(bad("t_go", "[B]".into(), t_go.size()));
        }
        if let Some(w) = u_warm {
            if w.size() != [b, self.horizon, self.m] {
                return Err(bad("u_warm", format!("[B, {}, {}]", self.horizon, self.m), w.size()));
            }
        }
        Ok(())
    }
}

/// Number of trainable parameters in a var store.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
