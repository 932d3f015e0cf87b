//! Parallel, deterministic generation of optimal demonstrations (`trc gen-data`).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::{sample_instance, Dataset, DatasetMeta, Split, FORMAT_VERSION};
use crate::config::ProblemConfig;
use crate::error::ConfigError;
use crate::solvers::{self, Instance, Solution, SolverSettings};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Problem (validated).
    pub problem: ProblemConfig,
    /// Base seed.
    pub seed: u64,
    /// Split.
    pub split: Split,
    /// Total samples requested over all shards.
    pub count: u64,
    /// This shard `(i, n)`: indices `[i count / n, (i + 1) count / n)`. `(0, 1)` = everything.
    pub shard: (u64, u64),
    /// Solver settings.
    pub settings: SolverSettings,
    /// Show a progress bar.
    pub progress: bool,
}

impl GenerateOptions {
    /// Solver settings for dataset generation: the defaults with the wall-clock limit lifted
    /// (1e6 s), so only iteration limits decide, never machine load.
    pub fn deterministic_settings() -> SolverSettings {
        SolverSettings::default().with_time_limit(1e6)
    }
}

/// Outcome of a generation run (timings are not stored in the dataset: they are not deterministic).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateReport {
    /// Samples attempted in this shard.
    pub attempted: u64,
    /// Samples solved to optimality.
    pub solved: u64,
    /// Dropped samples: index and reason.
    pub dropped: Vec<(u64, String)>,
    /// Wall time [s].
    pub wall_s: f64,
    /// Per-solved-sample solve time [ms], in index order.
    pub solve_ms: Vec<f64>,
    /// Rayon threads used.
    pub threads: usize,
}

/// Generates the shard's samples in parallel (rayon), a fresh solver per instance, and returns
/// them in index order. Deterministic: pass settings without a binding wall-clock limit
/// ([`GenerateOptions::deterministic_settings`]) so machine load cannot drop a sample.
///
/// # Errors
/// [`ConfigError`] if the problem or settings are invalid or the shard spec is.
pub fn generate(opts: &GenerateOptions) -> Result<(Dataset, GenerateReport), ConfigError> {
    opts.problem.validate()?;
    opts.settings.validate()?;
    let (i, n) = opts.shard;
    if n == 0 || i >= n {
        return Err(ConfigError::invalid("shard", format!("must be i/n with 0 <= i < n, got {i}/{n}")));
    }
    let start_idx = i * opts.count / n;
    let end_idx = (i + 1) * opts.count / n;
    let problem = opts.problem.build()?;
    let (nx, m, horizon) = (problem.state_dim(), problem.control_dim(), problem.horizon());
    let bar = if opts.progress { ProgressBar::new(end_idx - start_idx) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})").expect("valid template").progress_chars("=> "));
    bar.set_message(format!("gen-data {} {:?}", opts.problem.name, opts.split));
    let started = Instant::now();
    type Outcome = (u64, Instance, Result<Solution, String>);
    let results: Vec<Outcome> = (start_idx..end_idx)
        .into_par_iter()
        .map(|idx| {
            // A fresh solver per instance: a reused Clarabel workspace keeps the scaling of its
            // first problem, which would make results depend on scheduling and sharding.
            let inst = sample_instance(&opts.problem, opts.seed, opts.split, idx);
            let res = match solvers::for_problem(&opts.problem, opts.settings.clone()) {
                Ok(mut s) => s.solve(&inst).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            bar.inc(1);
            (idx, inst, res)
        })
        .collect();
    bar.finish_and_clear();
    let mut ds = Dataset {
        meta: DatasetMeta {
            version: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            problem: opts.problem.clone(),
            seed: opts.seed,
            split: opts.split,
            index_start: start_idx,
            index_end: end_idx,
            dropped: Vec::new(),
        },
        n: nx,
        m,
        horizon,
        index: Vec::new(),
        x0: Vec::new(),
        x_target: Vec::new(),
        t_go: Vec::new(),
        u: Vec::new(),
        x: Vec::new(),
        x_model: Vec::new(),
        cost: Vec::new(),
        iterations: Vec::new(),
    };
    let mut report = GenerateReport {
        attempted: end_idx - start_idx,
        solved: 0,
        dropped: Vec::new(),
        wall_s: 0.0,
        solve_ms: Vec::new(),
        threads: rayon::current_num_threads(),
    };
    for (idx, inst, res) in results {
        match res {
            Ok(sol) => {
                ds.push_solution(idx as i64, &inst, &sol);
                report.solve_ms.push(sol.solve_time.as_secs_f64() * 1e3);
                report.solved += 1;
            }
            Err(reason) => {
                ds.meta.dropped.push(idx);
                report.dropped.push((idx, reason));
            }
        }
    }
    report.wall_s = started.elapsed().as_secs_f64();
    Ok((ds, report))
}
