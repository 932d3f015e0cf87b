//! Initial-state distributions per problem (documented here, used by `trc gen-data`).
//!
//! Every sample has its own random stream keyed by (seed, split, index) (ChaCha8, stream id =
//! split * 2^40 + index), so samples are independent of how the index range is sharded or
//! parallelised, and the splits are disjoint streams.

use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{ProblemConfig, ProblemKind};
use crate::solvers::Instance;

/// Dataset split; each is a disjoint family of random streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (model selection).
    Val,
    /// Held-out test data (reported metrics only).
    Test,
}

impl Split {
    fn id(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }
    }
}

/// The random stream of one sample.
pub fn sample_rng(seed: u64, split: Split, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((split.id() << 40) + index);
    rng
}

/// Samples instance `index` of the stream (seed, split):
///
/// - **descent**: landing site at the origin, at rest; horizontal offset at distance
///   `U(0, 1500)` m in a uniform direction; altitude `U(1000, 2500)` m (inside the glide slope
///   for the default 15 deg: 1500 tan 15 deg = 402 m); horizontal velocity components `U(-40, 40)`
///   m/s, vertical `U(-80, -20)` m/s (speeds up to ~100 m/s); mass `U(m_wet - 40, m_wet)` kg;
///   t_f left to the solver (minimum fuel).
/// - **vanderpol** and **double_integrator**: `x0 ~ U([-2, 2]^2)`, target 0, the fixed horizon.
pub fn sample_instance(cfg: &ProblemConfig, seed: u64, split: Split, index: u64) -> Instance {
    let mut rng = sample_rng(seed, split, index);
    match cfg.name {
        ProblemKind::Descent => {
            let p = &cfg.descent;
            let d = rng.gen_range(0.0..1500.0);
            let az = rng.gen_range(0.0..std::f64::consts::TAU);
            let x0 = DVector::from_vec(vec![
                d * az.cos(),
                d * az.sin(),
                rng.gen_range(1000.0..2500.0),
                rng.gen_range(-40.0..40.0),
                rng.gen_range(-40.0..40.0),
                rng.gen_range(-80.0..-20.0),
                rng.gen_range(p.m_wet - 40.0..p.m_wet),
            ]);
            let mut xt = DVector::zeros(7);
            xt[6] = p.m_dry;
            Instance { x0, x_target: xt, t_go: None }
        }
        ProblemKind::Vanderpol | ProblemKind::DoubleIntegrator => {
            Instance { x0: DVector::from_fn(2, |_, _| rng.gen_range(-2.0..2.0)), x_target: DVector::zeros(2), t_go: None }
        }
    }
}
