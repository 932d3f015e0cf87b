//! The Tiny Recursive Control network (Jain & Linares 2025; docs/method.md), in tch.
//!
//! - [`ModelConfig`]: architecture, with named presets (`tiny` for CI, `paper` for the ~1.5M
//!   parameter model of the paper).
//! - [`layers`]: MLPs and the pre-norm transformer block of the reasoning module L_theta.
//! - [`projection`]: control constraints applied to every iterate (box clip; exact projection
//!   onto the thrust annulus and pointing cone).
//! - [`trc`]: the model: StateEncoder, InitialDecoder, ErrorEncoder, ControlEmbed, L_theta,
//!   ResidualDecoder, learned z_H / z_L, K outer x n inner iterations with the rollout simulated in
//!   the loop.
//! - [`active_set`]: the held control bounds of the batched terminal Gauss-Newton step.
//! - [`checkpoint`]: safetensors weights + YAML model card.
//! - [`cuda_graph`]: the refinement captured as one CUDA graph, autocast's dtype (bf16
//!   training) and CUDA's sync debug mode, through a small C++ shim over libtorch.
//!
//! The discrete model simulated in the loop is [`crate::problems::Simulator`]; the classical
//! terminal correction after the network is [`crate::control::correction`].

pub(crate) mod active_set;
pub mod checkpoint;
pub mod cuda_graph;
pub mod layers;
pub mod newton;
pub mod normalizer;
pub mod projection;
pub mod trc;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub use normalizer::Normalizer;
pub use trc::{Trc, TrcOutput};

/// TRC architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Latent width d of z_H, z_L and every token.
    pub latent: i64,
    /// Attention heads in L_theta (must divide `latent`).
    pub heads: i64,
    /// Transformer blocks in L_theta.
    pub layers: i64,
    /// MLP width of a block, as a multiple of `latent`.
    pub mlp_ratio: i64,
    /// Hidden width of the encoder / decoder MLPs.
    pub hidden: i64,
    /// Latent tokens: the horizon is cut into this many chunks of N / tokens steps (must divide N).
    pub tokens: i64,
    /// Outer ("strategic") iterations K used in training and by default in inference.
    pub outer: i64,
    /// Inner ("tactical") iterations n per outer iteration.
    pub inner: i64,
    /// Sensitivity (Gauss-Newton) features of each outer iteration (docs/method.md "Sensitivity
    /// features"). Default `off` (checkpoints written before the field existed load as `off`).
    #[serde(default)]
    pub newton: Newton,
    /// Monotone acceptance (globalisation): each outer iteration keeps, per instance, the
    /// candidate (in the predictor-corrector modes [`Newton::Step`], [`Newton::Corrected`]: the
    /// learned predictor-corrector iterate, or the Gauss-Newton step alone; in `off` and `input`:
    /// the learned iterate) with the lowest merit
    /// among those that lower the merit (fuel plus landing-error term; the problem's cost
    /// otherwise) without raising the terminal error (descent's terminal equality; a quadratic
    /// cost already prices the terminal state), or the current iterate where none does
    /// (docs/method.md "Monotone acceptance"). A trust-region-style safeguard: the weights are
    /// the same; the merit cannot rise. Default off.
    #[serde(default)]
    pub accept: bool,
    /// With [`ModelConfig::accept`], for a quadratic cost in the predictor-corrector modes (Van der
    /// Pol, double integrator in `step` / `corrected`): the acceptance also refuses a rise of the
    /// terminal error (as for descent), and where neither candidate passes, one
    /// Levenberg-Marquardt step on the cost that holds the linearised terminal state on its ray
    /// toward the target ([`crate::problems::cost_lm_step_error_held`]) is the fallback, so that
    /// a chain whose learned move trades the terminal error for cost goes on instead of stalling. Then
    /// both `J^(k)` and the terminal error are non-increasing in k per instance (the error up to
    /// [`crate::model::trc::ACCEPT_ERROR_SLACK`] per iteration). Default off
    /// (the acceptance judges `J` alone for a quadratic cost).
    #[serde(default)]
    pub joint_monotone: bool,
}

/// How TRC uses the sensitivity of the terminal state to its controls, computed every outer
/// iteration by the in-loop simulator ([`crate::problems::Simulator::terminal_jacobian`]).
///
/// With `G = d e / d u_n` (`e` the terminal error on the problem's terminal components scaled by
/// their success tolerances, `u_n` the normalised controls, `[B, c, N m]`), the minimum-norm
/// Gauss-Newton step is `g = -G^T (G G^T + mu I)^-1 e` (`[B, N, m]`, normalised units, limited
/// to a trust radius), and the null-space projector `P v = v - G^T (G G^T + mu I)^-1 G v`
/// removes a move's first-order effect on the terminal state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Newton {
    /// No sensitivity features (the TRC of the paper: only the errors are fed back).
    #[default]
    Off,
    /// `g`, per token, is an input of the ErrorEncoder and the ResidualDecoder; the network
    /// decides what to do with it.
    Input,
    /// As `Input`, and the update is Newton-structured, a predictor-corrector: the network's move
    /// `P ResidualDecoder(..)` (within the tangent space of the terminal constraint: fuel, shape),
    /// projected, then a Gauss-Newton step from there (`u^(k) = Project(u' + g(u'))`,
    /// `u' = Project(u^(k-1) + P ResidualDecoder(..))`), which takes the terminal error out; at `u*`
    /// both vanish, so `u*` is a fixed point. For a quadratic cost (no terminal equality) `P = I`
    /// and `g` is the Gauss-Newton step on the cost.
    Step,
    /// As `Input` (the learned move is unrestricted, `u' = Project(u^(k-1) + ResidualDecoder(..))`),
    /// then one Gauss-Newton corrector step from `u'`: `u^(k) = Project(u' + g(u'))`. Training
    /// clones the predictor `u'` toward `u*` (the learned part aims at the optimum, fuel and
    /// shape) and pulls the corrected iterate's terminal error to zero; the corrector removes the
    /// terminal error the learned move leaves (docs/method.md "Sensitivity features").
    Corrected,
}

impl Newton {
    /// Parses `off`, `input`, `step`, `corrected`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for another name.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        serde_yaml::from_str(s).map_err(|_| ConfigError::invalid("model.newton", format!("unknown mode `{s}` (off, input, step, corrected)")))
    }
}

impl ModelConfig {
    /// CI-fast preset: latent 32, 1 block, K = 2, n = 2, 5 tokens.
    pub fn tiny() -> Self {
        Self {
            latent: 32,
            heads: 2,
            layers: 1,
            mlp_ratio: 2,
            hidden: 64,
            tokens: 5,
            outer: 2,
            inner: 2,
            newton: Newton::Off,
            accept: false,
            joint_monotone: false,
        }
    }

    /// The paper's scale (Jain & Linares 2025, §4: latent 256, K = 3, n = 4..6, ~1.5M
    /// parameters): latent 256, 4 heads, 2 blocks with MLP ratio 2, encoder width 320, 10 tokens, K = 3, n = 4.
    pub fn paper() -> Self {
        Self {
            latent: 256,
            heads: 4,
            layers: 2,
            mlp_ratio: 2,
            hidden: 320,
            tokens: 10,
            outer: 3,
            inner: 4,
            newton: Newton::Off,
            accept: false,
            joint_monotone: false,
        }
    }

    /// The CPU-trainable middle scale between `tiny` and `paper` (capacity ablation of the
    /// refinement issue; trains in about an hour on 2 cores for 5,000 Van der Pol demonstrations):
    /// latent 96, 4 heads, 2 blocks with MLP ratio 2, encoder width 192, 10 tokens, K = 2, n = 2.
    pub fn small() -> Self {
        Self {
            latent: 96,
            heads: 4,
            layers: 2,
            mlp_ratio: 2,
            hidden: 192,
            tokens: 10,
            outer: 2,
            inner: 2,
            newton: Newton::Off,
            accept: false,
            joint_monotone: false,
        }
    }

    /// A preset by name (`tiny`, `small`, `paper`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown name.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "paper" => Ok(Self::paper()),
            other => Err(ConfigError::invalid("model.preset", format!("unknown preset `{other}` (tiny, small, paper)"))),
        }
    }

    /// Checks the architecture against a horizon N.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self, horizon: i64) -> Result<(), ConfigError> {
        for (name, v) in [
            ("latent", self.latent),
            ("heads", self.heads),
            ("layers", self.layers),
            ("mlp_ratio", self.mlp_ratio),
            ("hidden", self.hidden),
            ("tokens", self.tokens),
            ("outer", self.outer),
            ("inner", self.inner),
        ] {
            if v < 1 {
                return Err(ConfigError::invalid(format!("model.{name}"), format!("must be >= 1, got {v}")));
            }
        }
        if self.latent % self.heads != 0 {
            return Err(ConfigError::invalid("model.heads", format!("{} does not divide latent {}", self.heads, self.latent)));
        }
        if horizon % self.tokens != 0 {
            return Err(ConfigError::invalid("model.tokens", format!("{} does not divide the horizon N = {horizon}", self.tokens)));
        }
        Ok(())
    }
}
