//! Evaluation of a trained TRC model on a held-out dataset (`trc eval`).
//!
//! **Which discrete model the success criterion rolls out in:** the demonstrations' own
//! discretisation, in f64: RK4 with zero-order-hold controls for Van der Pol and the double
//! integrator; for descent the LCvx acceleration-hold model
//! ([`crate::problems::PoweredDescent::rollout_accel_hold`]). The optimum is checked against the
//! same criterion, so the success rate measures the network, not a mismatch between the solver's
//! discretisation and the rollout. For descent the thrust is also re-simulated through the RK4
//! thrust-hold plant (the "continuous" dynamics), for TRC and for the optimum.
//!
//! Costs: J is the problem's cost in that model (descent: fuel `sum |T| dt`); the gap is
//! `(J - J*) / J*`. The per-iteration cost J^(k) is the training cost of [`super::relative_cost`]
//! (for descent fuel / J* plus the landing-error term, since fuel alone is lowest for a vehicle
//! that does not land).

use nalgebra::{DMatrix, DVector};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::{relative_cost, Tensors};
use crate::config::ProblemKind;
use crate::config::{CorrectionModel, TerminalCorrection};
use crate::control::correction::TerminalCorrector;
use crate::data::Dataset;
use crate::model::Trc;
use crate::problems::ViolationKind;

/// Mean, median and 95th percentile.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Stats {
    /// Of a sample (NaN for an empty one).
    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self { mean: f64::NAN, median: f64::NAN, p95: f64::NAN };
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Self { mean: v.iter().sum::<f64>() / v.len() as f64, median: q(0.5), p95: q(0.95) }
    }
}

/// Results of one evaluation at one K.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    /// Outer iterations K used.
    pub outer: i64,
    /// Test samples.
    pub samples: usize,
    /// Relative cost gap `(J - J*) / J*` of the final controls.
    pub cost_gap: Stats,
    /// Gap of the totals, `sum_i J_i / sum_i J*_i - 1` over the test set: the relative cost
    /// excess of the whole set, which instances with J* near 0 (started at the target) cannot
    /// dominate as they do the per-sample mean.
    pub total_gap: f64,
    /// The per-sample gaps behind `cost_gap`, sorted ascending (the plotted distribution).
    #[serde(skip)]
    pub gaps: Vec<f64>,
    /// Success rate of TRC (criterion of the problem, in the evaluation model).
    pub success: f64,
    /// Success rate of the optimal demonstrations under the same criterion and model.
    pub success_optimum: f64,
    /// Samples with any thrust-bound / pointing / box violation.
    pub control_violations: usize,
    /// Samples with any state-constraint violation (glide slope, speed, dry mass).
    pub state_violations: usize,
    /// Samples whose optimal demonstration violates a state constraint under the same check (the
    /// reference for `state_violations`: the discrete optimum is checked in the evaluation model).
    pub state_violations_optimum: usize,
    /// Samples violating each kind of state constraint, TRC / the optimum under the same check
    /// (`(kind, trc, optimum)`, kinds that occur only).
    pub state_violation_kinds: Vec<(String, usize, usize)>,
    /// Mean per-iteration training cost J^(k) / J*, k = 0..K.
    pub per_iteration_cost: Vec<f64>,
    /// Fraction of samples whose per-iteration cost J^(k) / J* never increases (tolerance
    /// [`MONOTONE_COST_TOL`]; the cost only: the K sweep's [`SweepRow::monotone`] also holds the
    /// terminal error).
    pub monotone_fraction: f64,
    /// Descent: success after RK4 thrust-hold re-simulation, TRC and optimum.
    pub continuous_success: Option<(f64, f64)>,
    /// Descent: touchdown position / speed error in the evaluation model (median).
    pub landing_error_median: Option<(f64, f64)>,
    /// The same final controls after the classical step after the network: the terminal
    /// correction ([`crate::control::correction`]) for problems with a terminal equality
    /// (descent), the cost refinement (at most [`COST_REFINE_STEPS`] Levenberg-Marquardt steps) for
    /// problems with a quadratic cost (Van der Pol, double integrator).
    pub corrected: Option<CorrectedEval>,
}

/// Metrics of TRC's final controls after the terminal correction or the cost refinement (same
/// samples, same models; [`EvalResult::corrected`]).
#[derive(Debug, Clone, Serialize)]
pub struct CorrectedEval {
    /// Relative cost gap `(J - J*) / J*`.
    pub cost_gap: Stats,
    /// Gap of the totals, `sum_i J_i / sum_i J*_i - 1` (see [`EvalResult::total_gap`]).
    pub total_gap: f64,
    /// Success rate in the evaluation model.
    pub success: f64,
    /// Samples with any thrust-bound / pointing violation.
    pub control_violations: usize,
    /// Samples with any state-constraint violation (glide slope, speed, dry mass).
    pub state_violations: usize,
    /// Success after RK4 thrust-hold re-simulation.
    pub continuous_success: f64,
    /// Touchdown position / speed error in the evaluation model (median) [m, m/s].
    pub landing_error_median: (f64, f64),
    /// Mean steps taken (terminal correction: Gauss-Newton; cost refinement: Levenberg-Marquardt).
    pub mean_iterations: f64,
}

/// True for a violation of the control constraints (thrust bounds, pointing, box, non-finite).
fn is_control_violation(k: &ViolationKind) -> bool {
    matches!(
        k,
        ViolationKind::ThrustMin
            | ViolationKind::ThrustMax
            | ViolationKind::Pointing
            | ViolationKind::ControlLower
            | ViolationKind::ControlUpper
            | ViolationKind::NonFinite
    )
}

/// Per-sample training cost J^(k) / J* ([`relative_cost`], per-sample) of every iterate of `out`.
fn per_iterate_costs(model: &Trc, out: &crate::model::TrcOutput, b: &Tensors, landing_weight: f64) -> Vec<Vec<f64>> {
    (0..out.u.len())
        .map(|k| {
            Vec::<f64>::try_from(relative_cost(model, &out.u[k], &out.x[k], b, &out.dt, landing_weight, true).to_kind(Kind::Double).to_device(Device::Cpu))
                .expect("1-D")
        })
        .collect()
}

fn rows(t: &Tensor) -> Vec<DMatrix<f64>> {
    let t = t.to_kind(Kind::Double).to_device(Device::Cpu);
    (0..t.size()[0]).map(|b| crate::tensor::to_dmatrix(&t.get(b)).expect("2-D")).collect()
}

/// Most Levenberg-Marquardt steps of the cost refinement after the network for problems with a
/// quadratic cost ([`crate::problems::cost_gauss_newton_refine`]; [`EvalResult::corrected`]): the
/// controller's default `controller.cost_refinement_steps`.
pub const COST_REFINE_STEPS: usize = crate::config::DEFAULT_COST_REFINEMENT_STEPS;

/// Evaluates the model with `outer` iterations on `test`, in batches of `batch`.
pub fn evaluate(model: &Trc, test: &Dataset, outer: i64, batch: usize, landing_weight: f64) -> EvalResult {
    let _guard = tch::no_grad_guard();
    let sim = model.simulator();
    let p = sim.problem();
    let all = Tensors::new(test, model.device());
    let (n, m, nn) = (test.n, test.m, test.horizon);
    let mut gaps = Vec::new();
    let (mut sum_j, mut sum_j_star, mut sum_jc) = (0.0, 0.0, 0.0);
    let (mut ok, mut ok_opt, mut cviol, mut sviol, mut mono) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut sviol_opt = 0usize;
    let mut kinds: std::collections::BTreeMap<String, (usize, usize)> = std::collections::BTreeMap::new();
    let (mut cont, mut cont_opt) = (0usize, 0usize);
    let (mut pos_err, mut vel_err) = (Vec::new(), Vec::new());
    // in the evaluation model, so the corrected success is judged where the correction aims
    let corrector = TerminalCorrector::new(model.problem_config(), TerminalCorrection { model: CorrectionModel::InLoop, ..Default::default() })
        .expect("the model's problem is valid");
    let has_terminal = p.terminal_equality().is_some();
    // a quadratic cost (Van der Pol, double integrator): the classical step after the network is
    // the cost refinement (Levenberg-Marquardt) instead
    let has_cost = !has_terminal && p.quadratic_cost().is_some();
    let (mut c_gaps, mut c_pos, mut c_vel) = (Vec::new(), Vec::new(), Vec::new());
    let (mut c_ok, mut c_cv, mut c_sv, mut c_cont, mut c_iters) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut per_iter = vec![0.0; outer as usize + 1];
    let mut start = 0i64;
    while start < all.len() {
        let len = (batch as i64).min(all.len() - start);
        let idx = Tensor::arange_start(start, start + len, (Kind::Int64, model.device()));
        let b = all.select(&idx);
        let out = model.forward_t(&b.x0, &b.x_target, &b.t_go, None, outer, false);
        let costs = per_iterate_costs(model, &out, &b, landing_weight);
        let u_final = rows(&out.u[outer as usize]);
        for (j, uj) in u_final.iter().enumerate() {
            let i = (start as usize) + j;
            for (k, c) in costs.iter().enumerate() {
                per_iter[k] += c[j];
            }
            if costs.windows(2).all(|w| w[1][j] <= w[0][j] + MONOTONE_COST_TOL) {
                mono += 1;
            }
            let x0 = DVector::from_row_slice(&test.x0[i * n..(i + 1) * n]);
            let xt = DVector::from_row_slice(&test.x_target[i * n..(i + 1) * n]);
            let dt = test.t_go[i] / nn as f64;
            let u_star = DMatrix::from_row_slice(nn, m, &test.u[i * nn * m..(i + 1) * nn * m]);
            let x = sim.rollout_one(&x0, uj, dt).expect("dimensions match the model");
            let x_star = sim.rollout_one(&x0, &u_star, dt).expect("dimensions match the model");
            let j_trc = p.cost(&x, uj, &xt, dt);
            let j_star = p.cost(&x_star, &u_star, &xt, dt);
            gaps.push((j_trc - j_star) / j_star.abs().max(1e-12));
            sum_j += j_trc;
            sum_j_star += j_star;
            let last = x.row(nn).transpose();
            ok += p.is_success(&last, &xt) as usize;
            ok_opt += p.is_success(&x_star.row(nn).transpose(), &xt) as usize;
            let v = p.check_constraints(&x, uj, &xt);
            let is_ctrl = is_control_violation;
            cviol += v.iter().any(|v| is_ctrl(&v.kind)) as usize;
            sviol += v.iter().any(|v| !is_ctrl(&v.kind)) as usize;
            let v_star = p.check_constraints(&x_star, &u_star, &xt);
            sviol_opt += v_star.iter().any(|v| !is_ctrl(&v.kind)) as usize;
            for (vs, col) in [(&v, 0), (&v_star, 1)] {
                let mut seen: Vec<String> = vs.iter().filter(|v| !is_ctrl(&v.kind)).map(|v| format!("{:?}", v.kind)).collect();
                seen.dedup();
                seen.sort();
                seen.dedup();
                for k in seen {
                    let e = kinds.entry(k).or_default();
                    if col == 0 {
                        e.0 += 1;
                    } else {
                        e.1 += 1;
                    }
                }
            }
            // the classical step after the network: the terminal correction (descent) or the cost
            // refinement (quadratic costs), judged the same way
            let classical = if has_terminal {
                let (uc, rep) = corrector.correct(&x0, &xt, uj, dt, None);
                Some((uc, rep.iterations))
            } else if has_cost {
                Some(crate::problems::cost_gauss_newton_refine(p, &x0, uj, dt, &xt, COST_REFINE_STEPS, None).expect("a quadratic cost, checked above"))
            } else {
                None
            };
            if let Some((uc, steps)) = classical {
                c_iters += steps;
                let xc = sim.rollout_one(&x0, &uc, dt).expect("dimensions match the model");
                let jc = p.cost(&xc, &uc, &xt, dt);
                sum_jc += jc;
                c_gaps.push((jc - j_star) / j_star.abs().max(1e-12));
                let lc = xc.row(nn).transpose();
                c_ok += p.is_success(&lc, &xt) as usize;
                let vc = p.check_constraints(&xc, &uc, &xt);
                c_cv += vc.iter().any(|v| is_ctrl(&v.kind)) as usize;
                c_sv += vc.iter().any(|v| !is_ctrl(&v.kind)) as usize;
                if has_terminal {
                    // descent: the touchdown errors, and success re-simulated in the RK4 plant
                    c_pos.push((lc.rows(0, 3) - xt.rows(0, 3)).norm());
                    c_vel.push((lc.rows(3, 3) - xt.rows(3, 3)).norm());
                    let xcc = p.rollout(&x0, &uc, dt).expect("dims");
                    c_cont += p.is_success(&xcc.row(nn).transpose(), &xt) as usize;
                } else {
                    c_cont += p.is_success(&lc, &xt) as usize;
                }
            }
            if p.kind() == ProblemKind::Descent {
                pos_err.push((last.rows(0, 3) - xt.rows(0, 3)).norm());
                vel_err.push((last.rows(3, 3) - xt.rows(3, 3)).norm());
                let xc = p.rollout(&x0, uj, dt).expect("dims");
                let xc_star = p.rollout(&x0, &u_star, dt).expect("dims");
                cont += p.is_success(&xc.row(nn).transpose(), &xt) as usize;
                cont_opt += p.is_success(&xc_star.row(nn).transpose(), &xt) as usize;
            }
        }
        start += len;
    }
    let s = test.len().max(1) as f64;
    let descent = p.kind() == ProblemKind::Descent;
    EvalResult {
        outer,
        samples: test.len(),
        cost_gap: Stats::of(&gaps),
        total_gap: sum_j / sum_j_star.abs().max(1e-12) - 1.0,
        gaps: {
            gaps.sort_by(f64::total_cmp);
            gaps
        },
        success: ok as f64 / s,
        success_optimum: ok_opt as f64 / s,
        control_violations: cviol,
        state_violations: sviol,
        state_violations_optimum: sviol_opt,
        state_violation_kinds: kinds.into_iter().map(|(k, (a, b))| (k, a, b)).collect(),
        per_iteration_cost: per_iter.iter().map(|c| c / s).collect(),
        monotone_fraction: mono as f64 / s,
        continuous_success: descent.then(|| (cont as f64 / s, cont_opt as f64 / s)),
        landing_error_median: descent.then(|| (Stats::of(&pos_err).median, Stats::of(&vel_err).median)),
        corrected: (has_terminal || has_cost).then(|| CorrectedEval {
            cost_gap: Stats::of(&c_gaps),
            total_gap: sum_jc / sum_j_star.abs().max(1e-12) - 1.0,
            success: c_ok as f64 / s,
            control_violations: c_cv,
            state_violations: c_sv,
            continuous_success: c_cont as f64 / s,
            landing_error_median: (Stats::of(&c_pos).median, Stats::of(&c_vel).median),
            mean_iterations: c_iters as f64 / s,
        }),
    }
}

/// PCA of z_H and z_L across outer iterations: the top-2 principal components of the latents of
/// `samples` test instances over all iterations, and per iteration every instance's position in
/// that plane ([`LatentPca::mean`] gives the centroid) and the mean distance moved from the previous iteration (in the full latent space,
/// relative to the latent norm). A refinement that converges moves less and less.
#[derive(Debug, Clone, Serialize)]
pub struct LatentPca {
    /// Per outer iteration k >= 2: mean |z_H^(k) - z_H^(k-1)| / |z_H^(k)|.
    pub z_h_step: Vec<f64>,
    /// Per outer iteration k >= 2: the same for z_L.
    pub z_l_step: Vec<f64>,
    /// Per outer iteration: every instance's z_H in the (PC1, PC2) plane (for the scatter plot).
    pub z_h_points: Vec<Vec<(f64, f64)>>,
    /// Per outer iteration: the same for z_L.
    pub z_l_points: Vec<Vec<(f64, f64)>>,
}

impl LatentPca {
    /// Mean (PC1, PC2) of one iteration's points (e.g. `z_h_points[k]`; (0, 0) when empty).
    pub fn mean(points: &[(f64, f64)]) -> (f64, f64) {
        let n = points.len().max(1) as f64;
        (points.iter().map(|q| q.0).sum::<f64>() / n, points.iter().map(|q| q.1).sum::<f64>() / n)
    }
}

/// Computes [`LatentPca`] with `outer` iterations on the first `samples` test instances.
pub fn latent_pca(model: &Trc, test: &Dataset, outer: i64, samples: usize) -> LatentPca {
    let _guard = tch::no_grad_guard();
    let all = Tensors::new(test, model.device());
    let len = (samples as i64).min(all.len());
    let b = all.select(&Tensor::arange(len, (Kind::Int64, model.device())));
    let out = model.forward_t(&b.x0, &b.x_target, &b.t_go, None, outer, false);
    let pca = |zs: &[Tensor]| -> (Vec<f64>, Vec<Vec<(f64, f64)>>) {
        let flat: Vec<Tensor> = zs.iter().map(|z| z.flatten(1, -1).to_kind(Kind::Double).to_device(Device::Cpu)).collect();
        let stacked = Tensor::cat(&flat, 0);
        let mean = stacked.mean_dim(&[0i64][..], true, Kind::Double);
        let (_, _, v) = (&stacked - &mean).svd(true, true); // v: [D, k]
        let pcs = v.narrow(1, 0, 2.min(v.size()[1]));
        let points: Vec<Vec<(f64, f64)>> = flat
            .iter()
            .map(|z| {
                let proj = (z - &mean).matmul(&pcs); // [B, 2]
                let c = proj.size()[1];
                let v = Vec::<f64>::try_from(proj.contiguous().view([-1])).unwrap_or_default();
                v.chunks(c as usize).map(|r| (r[0], r.get(1).copied().unwrap_or(0.0))).collect()
            })
            .collect();
        let steps = flat
            .windows(2)
            .map(|w| {
                ((&w[1] - &w[0]).norm_scalaropt_dim(2, &[1i64][..], false) / w[1].norm_scalaropt_dim(2, &[1i64][..], false).clamp_min(1e-12))
                    .mean(Kind::Double)
                    .double_value(&[])
            })
            .collect();
        (steps, points)
    };
    let (z_h_step, z_h_points) = pca(&out.z_h);
    let (z_l_step, z_l_points) = pca(&out.z_l);
    LatentPca { z_h_step, z_l_step, z_h_points, z_l_points }
}

/// One row of the K sweep ([`k_sweep`]): the k-th iterate of one K_max-iteration chain, which is
/// exactly what a run with K = k returns (the iterates of a smaller K are a prefix).
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Outer iteration k (0 = the InitialDecoder's guess).
    pub k: i64,
    /// Success rate of u^(k) (problem criterion, evaluation model).
    pub success: f64,
    /// Mean terminal error `|e|_2` in tolerance units ([`crate::model::trc::newton_target`]:
    /// descent position / velocity over 1 m / 0.5 m/s; otherwise the state over the success radius).
    pub terminal_error: f64,
    /// Mean training cost J^(k) / J* ([`super::relative_cost`]).
    pub cost: f64,
    /// Mean cost gap `(J - J*) / J*` in the problem's own cost.
    pub gap: f64,
    /// Samples whose u^(k) violates a control constraint.
    pub control_violations: usize,
    /// Fraction of samples whose terminal error and cost never increased over iterations 0..=k
    /// (tolerances [`MONOTONE_COST_TOL`], [`MONOTONE_ERROR_TOL`]).
    pub monotone: f64,
}

/// Tolerance of the per-instance monotonicity of J^(k) / J* (relative to J*: float32 noise at
/// a fixed point is ~1e-7).
pub const MONOTONE_COST_TOL: f64 = 1e-5;
/// Tolerance of the per-instance monotonicity of the terminal error, in tolerance units (1 mm
/// for descent).
pub const MONOTONE_ERROR_TOL: f64 = 1e-3;

/// K sweep: runs `k_max` outer iterations on `test` (batches of `batch`) and reports every
/// iterate k = 0..=k_max ([`SweepRow`]).
pub fn k_sweep(model: &Trc, test: &Dataset, k_max: i64, batch: usize, landing_weight: f64) -> Vec<SweepRow> {
    let _guard = tch::no_grad_guard();
    let sim = model.simulator();
    let p = sim.problem();
    let (idx_t, scale) = crate::model::trc::newton_target(model.problem_config()).expect("the model's problem is valid");
    let all = Tensors::new(test, model.device());
    let (n, m, nn) = (test.n, test.m, test.horizon);
    let kk = k_max as usize + 1;
    let (mut ok, mut err, mut cost, mut gap, mut cv) = (vec![0usize; kk], vec![0.0; kk], vec![0.0; kk], vec![0.0; kk], vec![0usize; kk]);
    let mut mono = vec![0usize; kk];
    let mut start = 0i64;
    while start < all.len() {
        let len = (batch as i64).min(all.len() - start);
        let idx = Tensor::arange_start(start, start + len, (Kind::Int64, model.device()));
        let b = all.select(&idx);
        let out = model.forward_t(&b.x0, &b.x_target, &b.t_go, None, k_max, false);
        let costs = per_iterate_costs(model, &out, &b, landing_weight);
        let us: Vec<Vec<DMatrix<f64>>> = out.u.iter().map(rows).collect();
        for j in 0..len as usize {
            let i = start as usize + j;
            let x0 = DVector::from_row_slice(&test.x0[i * n..(i + 1) * n]);
            let xt = DVector::from_row_slice(&test.x_target[i * n..(i + 1) * n]);
            let dt = test.t_go[i] / nn as f64;
            let u_star = DMatrix::from_row_slice(nn, m, &test.u[i * nn * m..(i + 1) * nn * m]);
            let x_star = sim.rollout_one(&x0, &u_star, dt).expect("dimensions match the model");
            let j_star = p.cost(&x_star, &u_star, &xt, dt);
            let (mut prev_e, mut prev_c, mut still) = (f64::INFINITY, f64::INFINITY, true);
            for k in 0..kk {
                let uk = &us[k][j];
                let x = sim.rollout_one(&x0, uk, dt).expect("dimensions match the model");
                let last = x.row(nn).transpose();
                ok[k] += p.is_success(&last, &xt) as usize;
                let e = idx_t.iter().zip(&scale).map(|(&c, s)| ((last[c] - xt[c]) / s).powi(2)).sum::<f64>().sqrt();
                err[k] += e;
                cost[k] += costs[k][j];
                gap[k] += (p.cost(&x, uk, &xt, dt) - j_star) / j_star.abs().max(1e-12);
                cv[k] += p.check_constraints(&x, uk, &xt).iter().any(|v| is_control_violation(&v.kind)) as usize;
                still &= e <= prev_e + MONOTONE_ERROR_TOL && costs[k][j] <= prev_c + MONOTONE_COST_TOL;
                mono[k] += still as usize;
                (prev_e, prev_c) = (e, costs[k][j]);
            }
        }
        start += len;
    }
    let s = test.len().max(1) as f64;
    (0..kk)
        .map(|k| SweepRow {
            k: k as i64,
            success: ok[k] as f64 / s,
            terminal_error: err[k] / s,
            cost: cost[k] / s,
            gap: gap[k] / s,
            control_violations: cv[k],
            monotone: mono[k] as f64 / s,
        })
        .collect()
}
