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

use super::layers::{Block, Mlp};
use super::projection::project;
use super::{ModelConfig, Normalizer};
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
    device: Device,
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
        let res_dec = Mlp::zero_out(vs / "residual_decoder", d + chunk * m, h, chunk * m);
        Ok(Self {
            state_enc: Mlp::new(vs / "state_encoder", 2 * n + 1, h, d),
            init_dec: Mlp::zero_out(vs / "initial_decoder", d, h, horizon * m),
            err_enc: Mlp::new(vs / "error_encoder", 2 * n, h, d),
            ctrl_emb: nn::linear(vs / "control_embed", chunk * m, d, Default::default()),
            pos: vs.var("pos", &[t, d], init),
            z_h0: vs.var("z_h0", &[t, d], init),
            z_l0: vs.var("z_l0", &[t, d], init),
            blocks: (0..cfg.layers).map(|i| Block::new(vs / "reason" / i, d, cfg.heads, cfg.mlp_ratio)).collect(),
            ln_out: nn::layer_norm(vs / "reason" / "ln_out", vec![d], Default::default()),
            res_dec,
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

    /// The shared reasoning module L_theta on `[B, T, d]`: the blocks, then a LayerNorm so the
    /// latent states z_H / z_L stay bounded however many times the module is applied.
    fn reason(&self, xs: &Tensor) -> Tensor {
        self.ln_out.forward(&self.blocks.iter().fold(xs.shallow_clone(), |h, b| b.forward(&h)))
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
        let ctx_in = Tensor::cat(&[self.norm.x(&x0), self.norm.x(&xt), self.norm.t(&t_go).unsqueeze(1)], 1);
        let z0 = self.state_enc.forward(&ctx_in).unsqueeze(1); // [B, 1, d]
        let mut u = match u_warm {
            Some(w) => project(&w.to_device(self.device).to_kind(kind), &self.constraint),
            None => {
                let un = self.init_dec.forward(&z0.squeeze_dim(1)).view([b, self.horizon, self.m]);
                self.project_st(&self.norm.u_inv(&un))
            }
        };
        let mut z_h = self.z_h0.unsqueeze(0).expand([b, t, d], false).contiguous();
        let mut z_l = self.z_l0.unsqueeze(0).expand([b, t, d], false).contiguous();
        let ends = Tensor::arange_start_step(self.chunk, self.horizon + 1, self.chunk, (Kind::Int64, self.device));
        let mut out = TrcOutput { u: vec![u.shallow_clone()], x: Vec::new(), z_h: Vec::new(), z_l: Vec::new(), dt: dt.shallow_clone() };
        for k in 0..outer {
            if truncate && k > 0 {
                u = u.detach();
                z_h = z_h.detach();
                z_l = z_l.detach();
            }
            let traj = self.sim.rollout(&x0, &u, &dt);
            let e_chunk = self.norm.dx(&(traj.index_select(1, &ends) - xt.unsqueeze(1))).clamp(-20.0, 20.0);
            let e_term = self.norm.dx(&(traj.select(1, self.horizon) - &xt)).clamp(-20.0, 20.0).unsqueeze(1).expand([b, t, self.n], false);
            let z_err = self.err_enc.forward(&Tensor::cat(&[e_chunk, e_term], 2));
            let un = self.norm.u(&u).view([b, t, self.chunk * self.m]);
            let z_ctx = &z0 + z_err + self.ctrl_emb.forward(&un) + &self.pos;
            for _ in 0..self.cfg.inner {
                z_l = self.reason(&(&z_l + &z_h + &z_ctx));
            }
            z_h = self.reason(&(&z_h + &z_l));
            let du = self.res_dec.forward(&Tensor::cat(&[z_h.shallow_clone(), un], 2)).view([b, self.horizon, self.m]);
            out.x.push(traj);
            u = self.project_st(&(&u + self.norm.du_inv(&du)));
            out.u.push(u.shallow_clone());
            out.z_h.push(z_h.shallow_clone());
            out.z_l.push(z_l.shallow_clone());
            if !on_iterate(k + 1, &u) {
                break;
            }
        }
        out.x.push(self.sim.rollout(&x0, &u, &dt));
        out
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
