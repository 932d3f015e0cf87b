//! The discrete models a plan is simulated in: the plant model (RK4 with zero-order-hold
//! controls, what a plant integrates) and TRC's in-loop model (the model the demonstrations are
//! optimal in: RK4 for Van der Pol and the double integrator, the LCvx acceleration-hold model
//! for descent). Used by the network, the terminal correction, evaluation and the controller.

use tch::{Device, Kind, Tensor};

use super::{PoweredDescent, Problem, ProblemConfig, ProblemKind};
use crate::error::{ConfigError, ProblemError};

/// The discrete model simulated inside the refinement loop.
#[derive(Debug)]
pub enum Simulator {
    /// RK4 with zero-order-hold controls ([`Problem::rollout_batch`]).
    Rk4(Box<dyn Problem>),
    /// Descent: the LCvx acceleration-hold model.
    AccelHold(PoweredDescent),
}

impl Simulator {
    /// The simulator for a problem config.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem, or descent with planet rotation (the batched
    /// acceleration-hold model is the non-rotating closed form).
    pub fn new(cfg: &ProblemConfig) -> Result<Self, ConfigError> {
        Ok(match cfg.name {
            ProblemKind::Descent => {
                if cfg.descent.planet_rotation.iter().any(|w| *w != 0.0) {
                    return Err(ConfigError::invalid("problem.descent.planet_rotation", "TRC's in-loop simulator supports a non-rotating planet only"));
                }
                Simulator::AccelHold(PoweredDescent::new(cfg.descent.clone())?)
            }
            _ => Simulator::Rk4(cfg.build()?),
        })
    }

    /// The problem.
    pub fn problem(&self) -> &dyn Problem {
        match self {
            Simulator::Rk4(p) => p.as_ref(),
            Simulator::AccelHold(p) => p,
        }
    }

    /// `x0` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]` -> `[B, N+1, n]`.
    ///
    /// Small CPU batches without gradient (receding-horizon inference) are rolled out in f64
    /// with the problem's own nalgebra rollout and converted back: the same model (tests hold
    /// the batched and f64 rollouts equal to 1e-9), without the per-op overhead of a few
    /// thousand tiny tensor ops.
    pub fn rollout(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Tensor {
        if x0.device() == Device::Cpu && x0.size()[0] <= FAST_BATCH && !x0.requires_grad() && !u.requires_grad() && !dt.requires_grad() {
            if let Some(t) = self.rollout_f64(x0, u, dt) {
                return t;
            }
        }
        match self {
            Simulator::Rk4(p) => p.rollout_batch(x0, u, dt),
            Simulator::AccelHold(p) => p.rollout_accel_hold_batch(x0, u, dt),
        }
        .expect("shapes are checked when the model is built and at its input")
    }

    /// One trajectory in f64: `x0` (length n), `u` `[N, m]`, step `dt` [s] -> `[N+1, n]` (the same
    /// model as [`Simulator::rollout`]; evaluation and the terminal correction use it).
    ///
    /// # Errors
    /// [`ProblemError::Shape`] for wrong dimensions.
    pub fn rollout_one(&self, x0: &nalgebra::DVector<f64>, u: &nalgebra::DMatrix<f64>, dt: f64) -> Result<nalgebra::DMatrix<f64>, ProblemError> {
        match self {
            Simulator::Rk4(p) => p.rollout(x0, u, dt),
            Simulator::AccelHold(p) => p.rollout_accel_hold(x0, u, dt),
        }
    }

    fn rollout_f64(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Option<Tensor> {
        let (b, n) = (x0.size()[0] as usize, x0.size()[1] as usize);
        let (steps, m) = (u.size()[1] as usize, u.size()[2] as usize);
        let flat = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).ok();
        let (xv, uv, dv) = (flat(x0)?, flat(u)?, flat(dt)?);
        let mut out = Vec::with_capacity(b * (steps + 1) * n);
        for i in 0..b {
            let x = nalgebra::DVector::from_column_slice(&xv[i * n..(i + 1) * n]);
            let um = nalgebra::DMatrix::from_row_slice(steps, m, &uv[i * steps * m..(i + 1) * steps * m]);
            let traj = self.rollout_one(&x, &um, dv[i]).ok()?;
            out.extend_from_slice(traj.transpose().as_slice());
        }
        Some(Tensor::from_slice(&out).view([b as i64, steps as i64 + 1, n as i64]).to_kind(x0.kind()))
    }
}

/// Largest batch the f64 rollout path takes (see [`Simulator::rollout`]).
pub const FAST_BATCH: i64 = 8;
