//! Mid-flight (shrinking-horizon) descent demonstrations, derived from a dataset of full
//! descents (`trc mid-flight`).
//!
//! A receding-horizon controller asks the model for plans from states *along* a descent with
//! the time-to-go that is left, not only from the initial states of [`super::sample_instance`].
//! For every source sample this draws a node `k = round(s N)`, `s ~ U(0, s_max)`, takes the
//! solver's own predicted state `x_model[k]` (on the optimal trajectory), perturbs position and
//! velocity by `U(-1, 1) * (5 m, 0.5 m/s) * t_go' / t_go` per axis (closed-loop states are never
//! exactly on the plan), and re-solves LCvx with the fixed time-to-go `t_go' = (N - k) dt`
//! (Bellman: the remainder of an optimal trajectory is optimal for the state it passes through,
//! so the fixed `t_go'` is the minimum-fuel one up to the perturbation). Each sample draws from
//! its own random stream (seed, split, index), so the output is deterministic and independent
//! of the thread count. Samples whose re-solve fails (a perturbation pushed them infeasible)
//! are dropped and listed.

use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::DVector;
use rand::Rng;
use rayon::prelude::*;

use super::{sample_rng, Dataset};
use crate::config::ProblemKind;
use crate::error::ConfigError;
use crate::solvers::{self, Instance, SolverSettings};

/// Random-stream offset separating mid-flight draws from the instance draws of the same index.
const STREAM_OFFSET: u64 = 1 << 39;

/// Largest fraction of the horizon skipped, `s_max` (the last 10% is left to the terminal phase).
pub const S_MAX: f64 = 0.9;

/// Derives mid-flight demonstrations from `source` (a descent dataset), with `seed` keying
/// the draws. Returns the new dataset (same problem, split and seed metadata; `index` holds the
/// source index) and the dropped source indices with reasons.
///
/// # Errors
/// [`ConfigError`] if the source is not a descent dataset.
pub fn mid_flight(source: &Dataset, seed: u64, settings: &SolverSettings, progress: bool) -> Result<(Dataset, Vec<(i64, String)>), ConfigError> {
    if source.meta.problem.name != ProblemKind::Descent {
        return Err(ConfigError::invalid("mid-flight source", "mid-flight demonstrations are defined for descent datasets only"));
    }
    let (n, big_n) = (source.n, source.horizon);
    let bar = if progress { ProgressBar::new(source.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("mid-flight [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})").expect("valid template").progress_chars("=> "));
    let results: Vec<_> = (0..source.len())
        .into_par_iter()
        .map(|b| {
            let idx = source.index[b];
            let mut rng = sample_rng(seed, source.meta.split, STREAM_OFFSET + idx as u64);
            let k = (rng.gen_range(0.0..S_MAX) * big_n as f64).round() as usize;
            let dt = source.t_go[b] / big_n as f64;
            let t_go = (big_n - k) as f64 * dt;
            let shrink = t_go / source.t_go[b];
            let row = &source.x_model[(b * (big_n + 1) + k) * n..(b * (big_n + 1) + k + 1) * n];
            let mut x0 = DVector::from_column_slice(row);
            for i in 0..3 {
                x0[i] += rng.gen_range(-1.0..1.0) * 5.0 * shrink;
                x0[3 + i] += rng.gen_range(-1.0..1.0) * 0.5 * shrink;
            }
            let inst = Instance { x0, x_target: DVector::from_column_slice(&source.x_target[b * n..(b + 1) * n]), t_go: Some(t_go) };
            let res = solvers::for_problem(&source.meta.problem, settings.clone())
                .map_err(|e| e.to_string())
                .and_then(|mut s| s.solve(&inst).map_err(|e| e.to_string()));
            bar.inc(1);
            (idx, inst, res)
        })
        .collect();
    bar.finish_and_clear();
    Ok(collect(source, results))
}

/// Labels states with optimal demonstrations (DAgger: states visited in closed loop by the
/// current policy, each solved by the classical solver at its own fixed time-to-go). `states`
/// holds `(x, t_go, x_target)`; `template` supplies the problem and metadata. Returns the
/// dataset (`index` = position in `states`) and the dropped positions with reasons.
pub fn label_states(template: &Dataset, states: &[(Vec<f64>, f64, Vec<f64>)], settings: &SolverSettings, progress: bool) -> (Dataset, Vec<(i64, String)>) {
    let bar = if progress { ProgressBar::new(states.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("label [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})").expect("valid template").progress_chars("=> "));
    let results: Vec<_> = states
        .par_iter()
        .enumerate()
        .map(|(i, (x, t_go, xt))| {
            let inst = Instance { x0: DVector::from_column_slice(x), x_target: DVector::from_column_slice(xt), t_go: Some(*t_go) };
            let res = solvers::for_problem(&template.meta.problem, settings.clone())
                .map_err(|e| e.to_string())
                .and_then(|mut s| s.solve(&inst).map_err(|e| e.to_string()));
            bar.inc(1);
            (i as i64, inst, res)
        })
        .collect();
    bar.finish_and_clear();
    collect(template, results)
}

/// The solved results as a dataset shaped like `template` (in result order), and the dropped
/// indices with reasons.
fn collect(template: &Dataset, results: Vec<(i64, Instance, Result<crate::solvers::Solution, String>)>) -> (Dataset, Vec<(i64, String)>) {
    let mut out = template.empty_like();
    let mut dropped = Vec::new();
    for (idx, inst, res) in results {
        match res {
            Ok(sol) => out.push_solution(idx, &inst, &sol),
            Err(reason) => {
                out.meta.dropped.push(idx as u64);
                dropped.push((idx, reason));
            }
        }
    }
    (out, dropped)
}

impl Dataset {
    /// Concatenates datasets of the same problem (e.g. initial-state and mid-flight
    /// demonstrations) for training; metadata is the first one's.
    ///
    /// # Errors
    /// [`super::DataError::Merge`] if the problems or dimensions differ, or the list is empty.
    pub fn concat(sets: Vec<Dataset>) -> Result<Dataset, super::DataError> {
        let mut it = sets.into_iter();
        let mut out = it.next().ok_or_else(|| super::DataError::Merge("no datasets given".into()))?;
        for s in it {
            if s.meta.problem != out.meta.problem || (s.n, s.m, s.horizon) != (out.n, out.m, out.horizon) {
                return Err(super::DataError::Merge("datasets differ in problem configuration or dimensions".into()));
            }
            out.append_samples(s);
        }
        Ok(out)
    }
}
