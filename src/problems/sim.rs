//! The discrete models a plan is simulated in: the plant model (RK4 with zero-order-hold
//! controls, what a plant integrates) and TRC's in-loop model (the model the demonstrations are
//! optimal in: RK4 for Van der Pol and the double integrator, the LCvx acceleration-hold model
//! for descent). Used by the network, the terminal correction, evaluation and the controller.

use nalgebra::{DMatrix, DVector};
use std::ops::AddAssign;

use rayon::prelude::*;

use tch::{Device, Kind, Tensor};

use super::{PoweredDescent, Problem, ProblemConfig, ProblemKind};
use crate::error::{ConfigError, ProblemError};

/// The discrete model simulated inside the refinement loop.
#[derive(Debug)]
pub enum Simulator {
    /// RK4 with zero-order-hold controls ([`Problem::rollout_batch`]).
    Rk4(Box<dyn Problem>),
    /// Descent: the LCvx acceleration-hold model.
    AccelHold(Box<PoweredDescent>),
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
                Simulator::AccelHold(Box::new(PoweredDescent::new(cfg.descent.clone())?))
            }
            _ => Simulator::Rk4(cfg.build()?),
        })
    }

    /// The problem.
    pub fn problem(&self) -> &dyn Problem {
        match self {
            Simulator::Rk4(p) => p.as_ref(),
            Simulator::AccelHold(p) => p.as_ref(),
        }
    }

    /// `x0` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]` -> `[B, N+1, n]`.
    ///
    /// Small CPU batches without gradient (receding-horizon inference) are rolled out in f64
    /// with the problem's own nalgebra rollout and converted back: the same model (tests hold
    /// the batched and f64 rollouts equal to 1e-9), without the per-op overhead of a few
    /// thousand tiny tensor ops.
    pub fn rollout(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Tensor {
        self.rollout_on(x0, u, dt, x0.device() != Device::Cpu)
    }

    /// [`Simulator::rollout`] choosing the form: `device_path` takes the accelerator's
    /// (descent's loop-free [`super::PoweredDescent::rollout_accel_hold_fused`], no f64 fast
    /// path) on any device, the CPU included (tests hold the two paths equal); otherwise what
    /// [`Simulator::rollout`] does on the CPU.
    pub fn rollout_on(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, device_path: bool) -> Tensor {
        if !device_path && x0.device() == Device::Cpu && x0.size()[0] <= FAST_BATCH && !x0.requires_grad() && !u.requires_grad() && !dt.requires_grad() {
            if let Some(t) = self.rollout_f64(x0, u, dt) {
                return t;
            }
        }
        match self {
            Simulator::Rk4(p) => p.rollout_batch(x0, u, dt),
            // off the CPU: the same model without the loop over steps (launches, CUDA graphs)
            Simulator::AccelHold(p) if device_path => p.rollout_accel_hold_fused(x0, u, dt),
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

    /// Batched sensitivity of the terminal state to the controls: `x0` `[B, n]`, `u` `[B, N, m]`,
    /// `dt` `[B]`, terminal components `idx` -> `d x_N[idx] / d u`, `[B, idx.len(), N m]` (column
    /// `k m + j` = `u[k, j]`), detached, on `u`'s device and dtype.
    ///
    /// The same derivative as [`terminal_sensitivity`] (exact for the model), computed by that
    /// function per sample in f64 on the CPU, the samples in parallel (rayon), and moved to `u`'s
    /// device: a few tens of microseconds per sample for N = 50, faster than an autodiff graph of
    /// thousands of small kernels ([`Simulator::terminal_jacobian_autodiff`], the fallback; tests
    /// hold the two equal). This is what TRC's Newton features use ([`crate::model::Trc`],
    /// docs/method.md "Sensitivity features").
    pub fn terminal_jacobian(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Tensor {
        self.terminal_jacobian_on(x0, u, dt, idx, x0.device() != Device::Cpu)
    }

    /// [`Simulator::terminal_jacobian`] choosing the form: `device_path` takes the
    /// accelerator's batched closed form where the model has one
    /// ([`Simulator::terminal_jacobian_batched`]) on any device, the CPU included.
    pub fn terminal_jacobian_on(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize], device_path: bool) -> Tensor {
        // off the CPU, where the model has one: the batched closed form on the device (no host
        // synchronisation, so a CUDA graph can hold it)
        if device_path {
            if let Some(g) = self.terminal_jacobian_batched(x0, u, dt, idx) {
                return g;
            }
        }
        // f64 on the CPU, samples in parallel: faster than the autodiff graph's thousands of
        // small kernels at the batch sizes TRC trains and infers with
        match self.terminal_jacobian_f64(x0, u, dt, idx) {
            Some(g) => g.to_kind(u.kind()).to_device(u.device()),
            None => self.terminal_jacobian_autodiff(x0, u, dt, idx),
        }
    }

    /// [`Simulator::terminal_jacobian`] as batched tensor ops on the inputs' device, without a
    /// loop over steps or a host synchronisation, where the model has that form: descent's
    /// acceleration-hold model ([`super::PoweredDescent::rollout_accel_hold_fused`] then
    /// [`super::PoweredDescent::terminal_jacobian_accel_hold`]); `None` for the RK4 problems or on
    /// a shape error. Detached. What [`Simulator::terminal_jacobian`] runs off the CPU.
    pub fn terminal_jacobian_batched(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Option<Tensor> {
        let Simulator::AccelHold(p) = self else { return None };
        let (x0, u, dt) = (x0.detach(), u.detach(), dt.detach());
        let traj = p.rollout_accel_hold_fused(&x0, &u, &dt).ok()?;
        self.terminal_jacobian_from(&traj, &u, &dt, idx)
    }

    /// [`Simulator::terminal_jacobian_batched`] from a rollout `traj` `[B, N+1, n]` of `u` the
    /// caller already has (saves the rollout); `None` for the RK4 problems or on a shape error.
    pub fn terminal_jacobian_from(&self, traj: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Option<Tensor> {
        let Simulator::AccelHold(p) = self else { return None };
        p.terminal_jacobian_accel_hold(traj, u, &dt.detach(), idx).ok()
    }

    /// [`Simulator::terminal_jacobian`] by reverse-mode autodiff through the batched rollout on
    /// any device (the path taken off the CPU; public so tests can hold both paths equal).
    pub fn terminal_jacobian_autodiff(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Tensor {
        let (b, steps, m) = (u.size()[0], u.size()[1], u.size()[2]);
        let c = idx.len() as i64;
        tch::with_grad(|| {
            let ug = u.detach().set_requires_grad(true);
            let traj = match self {
                Simulator::Rk4(p) => p.rollout_batch(&x0.detach(), &ug, &dt.detach()),
                Simulator::AccelHold(p) => p.rollout_accel_hold_batch(&x0.detach(), &ug, &dt.detach()),
            }
            .expect("shapes are checked when the model is built and at its input");
            let last = traj.select(1, steps);
            let rows: Vec<Tensor> = idx
                .iter()
                .enumerate()
                .map(|(r, &i)| {
                    let keep = r + 1 < idx.len();
                    Tensor::run_backward(&[last.select(1, i as i64).sum(last.kind())], &[&ug], keep, false).pop().expect("one input, one gradient").view([
                        b,
                        1,
                        steps * m,
                    ])
                })
                .collect();
            Tensor::cat(&rows, 1).view([b, c, steps * m]).detach()
        })
    }

    /// Batched cost step: one Levenberg-Marquardt step of [`cost_gauss_newton_refine`] per sample
    /// (the undamped projected Gauss-Newton step with a line search it replaced stalled on Van
    /// der Pol: docs/refinement-log.md, session of 2026-12-07): `x0`, `xt` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]` -> the
    /// steps `[B, N, m]` (physical units) on `u`'s device and dtype; `None` for a problem without a
    /// quadratic cost (descent). Computed per sample in f64 on the CPU whatever the device (the
    /// dense `[N m, N m]` Gauss-Newton matrix has no batched tensor form worth its memory).
    pub fn cost_newton(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, xt: &Tensor) -> Option<Tensor> {
        let Simulator::Rk4(p) = self else { return None };
        p.quadratic_cost()?;
        per_sample_controls(x0, u, dt, xt, |_, x, um, dt, target| Some(cost_gauss_newton_refine(p.as_ref(), x, um, dt, target, 1, None).ok()?.0 - um))
    }

    /// Batched [`cost_lm_step_error_held`]: per sample where `rows` is `true` (all where `None`),
    /// the controls after one Levenberg-Marquardt step on the cost that does not raise the
    /// terminal error (components `idx` over `scale`, equal lengths, by more than `slack` in those
    /// units), or `u` itself where no such step is found, where the step reports an error, and
    /// where `rows` is `false` (not computed). `x0`, `xt` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]`,
    /// `rows` `[B]` -> `[B, N, m]` on `u`'s device and dtype; `None` for a problem without a
    /// quadratic cost or tensors that cannot be read as f64. Per sample in f64 on the CPU.
    #[allow(clippy::too_many_arguments)]
    pub fn cost_newton_error_held(
        &self,
        x0: &Tensor,
        u: &Tensor,
        dt: &Tensor,
        xt: &Tensor,
        idx: &[usize],
        scale: &[f64],
        slack: f64,
        rows: Option<&[bool]>,
    ) -> Option<Tensor> {
        let Simulator::Rk4(p) = self else { return None };
        p.quadratic_cost()?;
        if rows.is_some_and(|r| r.len() as i64 != x0.size()[0]) {
            return None;
        }
        per_sample_controls(x0, u, dt, xt, |i, x, um, dt, target| {
            let next = if rows.is_none_or(|r| r[i]) { cost_lm_step_error_held(p.as_ref(), x, um, dt, target, idx, scale, slack).ok().flatten() } else { None };
            Some(next.unwrap_or_else(|| um.clone()))
        })
    }

    fn terminal_jacobian_f64(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Option<Tensor> {
        let (b, n) = (x0.size()[0] as usize, x0.size()[1] as usize);
        let (steps, m) = (u.size()[1] as usize, u.size()[2] as usize);
        let flat = crate::tensor::flat_f64;
        let (xv, uv, dv) = (flat(x0)?, flat(u)?, flat(dt)?);
        let per: Vec<Option<Vec<f64>>> = (0..b)
            .into_par_iter()
            .map(|i| {
                let x = DVector::from_column_slice(&xv[i * n..(i + 1) * n]);
                let um = DMatrix::from_row_slice(steps, m, &uv[i * steps * m..(i + 1) * steps * m]);
                let (_, g) = terminal_sensitivity(self, &x, &um, dv[i], idx).ok()?;
                Some(g.transpose().as_slice().to_vec()) // row-major [c, N m]
            })
            .collect();
        let out: Vec<f64> = per.into_iter().collect::<Option<Vec<_>>>()?.concat();
        Some(Tensor::from_slice(&out).view([b as i64, idx.len() as i64, (steps * m) as i64]))
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

/// Runs `f(i, x0_i, u_i, dt_i, xt_i)` per sample in f64 on the CPU (rayon) and stacks the
/// `[N, m]` results: `x0`, `xt` `[B, n]`, `u` `[B, N, m]`, `dt` `[B]` -> `[B, N, m]` on `u`'s device
/// and dtype. `None` if a tensor cannot be read as f64, the sizes disagree, or `f` returns `None`
/// for any sample.
fn per_sample_controls(
    x0: &Tensor,
    u: &Tensor,
    dt: &Tensor,
    xt: &Tensor,
    f: impl Fn(usize, &DVector<f64>, &DMatrix<f64>, f64, &DVector<f64>) -> Option<DMatrix<f64>> + Sync,
) -> Option<Tensor> {
    let (b, n) = (x0.size()[0] as usize, x0.size()[1] as usize);
    let (steps, m) = (u.size()[1] as usize, u.size()[2] as usize);
    let flat = crate::tensor::flat_f64;
    let (xv, uv, dv, tv) = (flat(x0)?, flat(u)?, flat(dt)?, flat(xt)?);
    if xv.len() != b * n || tv.len() != b * n || uv.len() != b * steps * m || dv.len() != b {
        return None;
    }
    let per: Vec<Option<Vec<f64>>> = (0..b)
        .into_par_iter()
        .map(|i| {
            let x = DVector::from_column_slice(&xv[i * n..(i + 1) * n]);
            let target = DVector::from_column_slice(&tv[i * n..(i + 1) * n]);
            let um = DMatrix::from_row_slice(steps, m, &uv[i * steps * m..(i + 1) * steps * m]);
            Some(f(i, &x, &um, dv[i], &target)?.transpose().as_slice().to_vec())
        })
        .collect();
    let out: Vec<f64> = per.into_iter().collect::<Option<Vec<_>>>()?.concat();
    Some(Tensor::from_slice(&out).view([b as i64, steps as i64, m as i64]).to_kind(u.kind()).to_device(u.device()))
}

/// Rollout `[N+1, n]` of `u` `[N, m]` from `x0` in `sim`, and the Jacobian of the terminal state
/// rows `idx` with respect to `u` (row-major flattening, column `k m + j` = `u[k, j]`):
/// `[idx.len(), N m]`. Descent's mass row (index 6) is of `z_N = ln m_N`, the LCvx variable
/// (`d m_N = m_N dz_N`); the Newton features use position and velocity only.
///
/// # Errors
/// The rollout's [`crate::error::ProblemError`] for wrong dimensions.
pub fn terminal_sensitivity(
    sim: &Simulator,
    x0: &DVector<f64>,
    u: &DMatrix<f64>,
    dt: f64,
    idx: &[usize],
) -> Result<(DMatrix<f64>, DMatrix<f64>), crate::error::ProblemError> {
    let (steps, m) = (u.nrows(), u.ncols());
    let mut g = DMatrix::zeros(idx.len(), steps * m);
    match sim {
        Simulator::AccelHold(p) => {
            let traj = p.rollout_accel_hold(x0, u, dt)?;
            let d = p.lcvx_discretization(dt);
            // lam = d e / d y_k, rows idx of y_N to start (r, v are the same in x and y)
            let mut lam = DMatrix::zeros(idx.len(), 7);
            for (r, &i) in idx.iter().enumerate() {
                lam[(r, i)] = 1.0;
            }
            for k in (0..steps).rev() {
                let mass = traj[(k, 6)];
                let t = DVector::from_vec(vec![u[(k, 0)], u[(k, 1)], u[(k, 2)]]);
                let tn = t.norm().max(1e-12);
                // w = (T / m, |T| / m): dw/dT [4, 3], dw/dz [4] (z = ln m)
                let mut dw_dt = DMatrix::zeros(4, 3);
                for j in 0..3 {
                    dw_dt[(j, j)] = 1.0 / mass;
                    dw_dt[(3, j)] = t[j] / (tn * mass);
                }
                let dw_dz = DVector::from_vec(vec![-t[0] / mass, -t[1] / mass, -t[2] / mass, -tn / mass]);
                let lb = &lam * &d.b; // [c, 4]
                let gk = &lb * &dw_dt; // [c, 3]
                g.columns_mut(k * m, m).copy_from(&gk);
                let mut jy = d.a.clone();
                let bz = &d.b * &dw_dz; // [7]
                for r in 0..7 {
                    jy[(r, 6)] += bz[r];
                }
                lam = &lam * &jy;
            }
            Ok((traj, g))
        }
        Simulator::Rk4(p) => {
            let traj = p.rollout(x0, u, dt)?;
            let n = x0.len();
            let mut lam = DMatrix::zeros(idx.len(), n);
            for (r, &i) in idx.iter().enumerate() {
                lam[(r, i)] = 1.0;
            }
            for k in (0..steps).rev() {
                let (a, b) = p.step_jacobian(&traj.row(k).transpose(), &u.row(k).transpose(), dt);
                g.columns_mut(k * m, m).copy_from(&(&lam * &b));
                lam = &lam * &a;
            }
            Ok((traj, g))
        }
    }
}

/// Rollout `[N+1, n]` of `u` `[N, m]` from `x0` in `sim`, and the Jacobians of the positions
/// (state rows 0..3) at every node with respect to `u`: `N+1` matrices `[3, N m]` (row-major
/// flattening as in [`terminal_sensitivity`]; node 0 is all zeros). Forward mode: the state
/// sensitivity `S_{k+1} = A_k S_k + B_k E_k` (`E_k` selects `u_k`), exact for the model, in
/// `O(N^2 m n^2)`; the terminal correction uses it for the glide-slope rows.
///
/// # Errors
/// The rollout's [`crate::error::ProblemError`] for wrong dimensions.
pub fn position_sensitivities(
    sim: &Simulator,
    x0: &DVector<f64>,
    u: &DMatrix<f64>,
    dt: f64,
) -> Result<(DMatrix<f64>, Vec<DMatrix<f64>>), crate::error::ProblemError> {
    let (steps, m) = (u.nrows(), u.ncols());
    let rows = x0.len().min(3);
    let mut out = Vec::with_capacity(steps + 1);
    out.push(DMatrix::zeros(rows, steps * m));
    match sim {
        Simulator::AccelHold(p) => {
            let traj = p.rollout_accel_hold(x0, u, dt)?;
            let d = p.lcvx_discretization(dt);
            // S = d y_k / d u, y = (r, v, ln m)
            let mut s = DMatrix::<f64>::zeros(7, steps * m);
            for k in 0..steps {
                let mass = traj[(k, 6)];
                let t = DVector::from_vec(vec![u[(k, 0)], u[(k, 1)], u[(k, 2)]]);
                let tn = t.norm().max(1e-12);
                let mut dw_dt = DMatrix::zeros(4, 3);
                for j in 0..3 {
                    dw_dt[(j, j)] = 1.0 / mass;
                    dw_dt[(3, j)] = t[j] / (tn * mass);
                }
                let dw_dz = DVector::from_vec(vec![-t[0] / mass, -t[1] / mass, -t[2] / mass, -tn / mass]);
                let mut jy = d.a.clone();
                let bz = &d.b * &dw_dz;
                for r in 0..7 {
                    jy[(r, 6)] += bz[r];
                }
                s = &jy * &s;
                let bu = &d.b * &dw_dt; // [7, 3]
                s.columns_mut(k * m, m).copy_from(&bu);
                out.push(s.rows(0, rows).into_owned());
            }
            Ok((traj, out))
        }
        Simulator::Rk4(p) => {
            let traj = p.rollout(x0, u, dt)?;
            let n = x0.len();
            let mut s = DMatrix::<f64>::zeros(n, steps * m);
            for k in 0..steps {
                let (a, b) = p.step_jacobian(&traj.row(k).transpose(), &u.row(k).transpose(), dt);
                s = &a * &s;
                s.columns_mut(k * m, m).copy_from(&b);
                out.push(s.rows(0, rows).into_owned());
            }
            Ok((traj, out))
        }
    }
}

/// The Gauss-Newton model of the quadratic tracking cost of an RK4 problem about `u` `[N, m]`:
/// the states' sensitivity `S_j = d x_j / d u` by the chain rule through
/// [`Problem::step_jacobian`], `H = sum_j S_j' W_j S_j + R I`, `g = sum_j S_j' W_j (x_j - x_t) + R u`.
fn cost_gn_system(p: &dyn Problem, x0: &DVector<f64>, u: &DMatrix<f64>, dt: f64, xt: &DVector<f64>) -> Result<CostGnSystem, ProblemError> {
    let Some((q, r, q_f)) = p.quadratic_cost() else {
        return Err(super::shape_err(p.kind(), "cost_gauss_newton_refine", "a quadratic tracking cost".into(), "none".into()));
    };
    let traj = p.rollout(x0, u, dt)?;
    let (steps, m, n) = (u.nrows(), u.ncols(), x0.len());
    let nm = steps * m;
    let mut s = DMatrix::<f64>::zeros(n, nm);
    let mut h = DMatrix::<f64>::zeros(nm, nm);
    let mut g = DVector::<f64>::zeros(nm);
    for j in 0..steps {
        let (a, b) = p.step_jacobian(&traj.row(j).transpose(), &u.row(j).transpose(), dt);
        let live = (j + 1) * m; // columns 0..live of S are non-zero
        let s_live = &a * s.columns(0, live);
        s.columns_mut(0, live).copy_from(&s_live);
        s.columns_mut(j * m, m).add_assign(&b);
        let w = if j + 1 == steps { &q_f } else { &q };
        let sl = s.columns(0, live);
        let mut ws = sl.clone_owned();
        for (i, wi) in w.iter().enumerate() {
            ws.row_mut(i).scale_mut(*wi);
        }
        let e = traj.row(j + 1).transpose() - xt;
        let mut hb = h.view_mut((0, 0), (live, live));
        hb += sl.transpose() * &ws;
        let mut gb = g.rows_mut(0, live);
        gb += ws.transpose() * e;
    }
    let u_flat = DVector::from_iterator(nm, u.row_iter().flat_map(|row| row.iter().copied().collect::<Vec<_>>()));
    for i in 0..nm {
        h[(i, i)] += r;
    }
    g += &u_flat * r;
    let x_n = traj.row(steps).transpose();
    Ok(CostGnSystem { h, g, u_flat, j: p.cost(&traj, u, xt, dt), s_n: s, x_n })
}

/// The Gauss-Newton model of a quadratic tracking cost about `u` ([`cost_gn_system`]): `H`
/// `[N m, N m]`, the gradient `g` `[N m]`, `u` flattened row-major, `J(u)`, the terminal
/// state's sensitivity `S_N = d x_N / d u` `[n, N m]` and the terminal state `x_N` `[n]`.
struct CostGnSystem {
    h: DMatrix<f64>,
    g: DVector<f64>,
    u_flat: DVector<f64>,
    j: f64,
    s_n: DMatrix<f64>,
    x_n: DVector<f64>,
}

/// The control box of `p` per flattened component (`None` for a problem without a box).
fn box_of(p: &dyn Problem, m: usize) -> Option<impl Fn(usize) -> (f64, f64)> {
    match p.control_constraint() {
        super::ControlConstraint::Box { lower, upper } => Some(move |i: usize| (lower[i % m], upper[i % m])),
        _ => None,
    }
}

/// `u_flat` (`[N m]`, row-major) moved by `du` on the components `free` (`du[k]` moves
/// `free[k]`) and clipped into the box, as `[N, m]`.
fn step_in_box(u_flat: &DVector<f64>, free: &[usize], du: &DVector<f64>, bound: Option<&impl Fn(usize) -> (f64, f64)>, steps: usize, m: usize) -> DMatrix<f64> {
    let mut cand = u_flat.clone();
    for (k, &i) in free.iter().enumerate() {
        cand[i] += du[k];
        if let Some(b) = bound {
            let (lo, hi) = b(i);
            cand[i] = cand[i].clamp(lo, hi);
        }
    }
    DMatrix::from_row_slice(steps, m, cand.as_slice())
}

/// Components at a bound the gradient pushes against (held by the projected Newton step).
fn held_set(bound: Option<&impl Fn(usize) -> (f64, f64)>, u_flat: &DVector<f64>, g: &DVector<f64>) -> Vec<bool> {
    (0..u_flat.len())
        .map(|i| {
            bound.is_some_and(|b| {
                let (lo, hi) = b(i);
                let tol = 1e-6 * (hi - lo).abs().max(1.0);
                (u_flat[i] >= hi - tol && g[i] < 0.0) || (u_flat[i] <= lo + tol && g[i] > 0.0)
            })
        })
        .collect()
}

/// Up to `max_steps` Levenberg-Marquardt steps on a quadratic tracking cost from `u` `[N, m]`
/// (physical units): the Gauss-Newton model of the cost (`H`, `g` above) with the components at a
/// bound the gradient pushes against held, `(H_free + lambda d I) du = -g_free` (`d` the mean of
/// `H_free`'s diagonal, `lambda` from 1e-3, divided by 3 after a step taken and multiplied by 4,
/// up to 8 times, while a step is refused), the result clipped into the box. A step is taken
/// only if it lowers `J` by a relative `1e-9` and keeps the terminal state inside the success
/// region when it was inside (the success criterion is not part of `J`). `d` is the mean of the
/// diagonal of `H` restricted to the free components. A classical refinement
/// after the network for Van der Pol and the double integrator (the cost counterpart of
/// descent's terminal correction; Nocedal & Wright, "Numerical Optimization", 2nd ed., 10.3).
/// With a `deadline`, no damped solve starts after it and no step starts unless the previous
/// step's duration still fits before it. Returns the refined controls and the number of steps
/// taken.
///
/// # Errors
/// [`ProblemError::Shape`] for wrong dimensions, or a problem without a quadratic cost.
pub fn cost_gauss_newton_refine(
    p: &dyn Problem,
    x0: &DVector<f64>,
    u: &DMatrix<f64>,
    dt: f64,
    xt: &DVector<f64>,
    max_steps: usize,
    deadline: Option<std::time::Instant>,
) -> Result<(DMatrix<f64>, usize), ProblemError> {
    let (steps, m) = (u.nrows(), u.ncols());
    let nm = steps * m;
    let bound = box_of(p, m);
    let judge = |u: &DMatrix<f64>| -> Result<(f64, bool), ProblemError> {
        let x = p.rollout(x0, u, dt)?;
        Ok((p.cost(&x, u, xt, dt), p.is_success(&x.row(steps).transpose(), xt)))
    };
    let mut u = u.clone();
    let (_, mut ok) = judge(&u)?;
    let mut lambda = 1e-3;
    let mut taken = 0;
    // a step is started only if the previous one would still end before the deadline
    let mut last_step = std::time::Duration::ZERO;
    let past = |extra: std::time::Duration| deadline.is_some_and(|d| std::time::Instant::now() + extra >= d);
    for _ in 0..max_steps {
        let t0 = std::time::Instant::now();
        if past(last_step) {
            break;
        }
        let sys = cost_gn_system(p, x0, &u, dt, xt)?;
        let held = held_set(bound.as_ref(), &sys.u_flat, &sys.g);
        let free: Vec<usize> = (0..nm).filter(|&i| !held[i]).collect();
        if free.is_empty() {
            break;
        }
        let hf = DMatrix::from_fn(free.len(), free.len(), |a, b| sys.h[(free[a], free[b])]);
        let gf = DVector::from_fn(free.len(), |a, _| -sys.g[free[a]]);
        let d = (0..free.len()).map(|a| hf[(a, a)]).sum::<f64>() / free.len() as f64;
        let mut accepted = false;
        for _ in 0..8 {
            if past(std::time::Duration::ZERO) {
                break;
            }
            let mut damped = hf.clone();
            for a in 0..free.len() {
                damped[(a, a)] += lambda * d;
            }
            if let Some(ch) = damped.cholesky() {
                let df = ch.solve(&gf);
                let cand = step_in_box(&sys.u_flat, &free, &df, bound.as_ref(), steps, m);
                let (jc, okc) = judge(&cand)?;
                // a lower J (any finite J when the current one is not finite)
                let lower = if sys.j.is_finite() { jc < sys.j - 1e-9 * sys.j.abs() } else { jc.is_finite() };
                if lower && (okc || !ok) {
                    u = cand;
                    ok = okc;
                    lambda = (lambda / 3.0).max(1e-9);
                    accepted = true;
                    break;
                }
            }
            lambda *= 4.0;
        }
        if !accepted {
            break;
        }
        taken += 1;
        last_step = t0.elapsed();
    }
    Ok((u, taken))
}

/// One Levenberg-Marquardt step on a quadratic tracking cost from `u` `[N, m]` (physical units;
/// `x0`, `xt` `[n]`, `dt` s) that lowers `J` without raising the terminal error: the step of
/// [`cost_gauss_newton_refine`] with the linearised terminal state held on the ray toward the
/// target. With `a = W (x_N - x_t)` on the state components `idx` (`W = diag(1 / scale)`, `scale`
/// of the same length as `idx`: the success tolerances, so `e = |a|` is in tolerance units, as is
/// `slack`) and `C = W S_N` restricted to `idx` (`S_N = d x_N / d u`), the step solves
/// `min 1/2 du' (H + lambda d I) du + g' du` (`H`, `g` the Gauss-Newton model of `J`, `d` the mean
/// of `H`'s diagonal over the free components) subject to `C du = -beta a`: first with `beta`
/// free (the terminal state may move only along `a`, `e` changes to first order by `-beta e`),
/// then, if that `beta` lies outside `[0, 1]`, with `beta` at the nearer end (0: the terminal
/// state held; 1: moved onto the target). The equality-constrained quadratic program is solved
/// through its Schur complement (`[c, c]`, pseudo-inverse: the constraints of the free `beta`
/// have rank `c - 1`). Components at a bound the gradient pushes against are held, the result is
/// clipped into the box, and the damping grows (x4, up to 8 tries, from `lambda = 1e-3`) until the
/// candidate lowers `J` by a relative `1e-9` and raises `e` by at most `slack` (and keeps a
/// successful terminal state successful). Returns the candidate, or `None` where no damping gives
/// one, where every component is held, or where `J(u)` is not finite. The terminal state is held
/// to its ray (sideways moves are frozen too), so the step is conservative: a chain of these steps
/// can stop short of `J*` where the optimum's terminal state lies off the ray, where the box clips
/// the step, or once the error is below the optimum's (docs/refinement-log.md, session of
/// 2026-12-07 (third)). Equality-constrained QP by the Schur complement: Nocedal & Wright,
/// "Numerical Optimization", 2nd ed., 16.1-16.2. It lets a monotone acceptance that holds both
/// `J` and the terminal error go on where the plain step would trade one against the other
/// (docs/method.md "Monotone acceptance").
///
/// # Errors
/// [`ProblemError::Shape`] for wrong dimensions (of `x0`, `xt`, `u`, or `idx` / `scale`), or a
/// problem without a quadratic cost.
#[allow(clippy::too_many_arguments)]
pub fn cost_lm_step_error_held(
    p: &dyn Problem,
    x0: &DVector<f64>,
    u: &DMatrix<f64>,
    dt: f64,
    xt: &DVector<f64>,
    idx: &[usize],
    scale: &[f64],
    slack: f64,
) -> Result<Option<DMatrix<f64>>, ProblemError> {
    let (steps, m) = (u.nrows(), u.ncols());
    let nm = steps * m;
    let n = p.state_dim();
    let shape = |what: &'static str, want: String, got: String| super::shape_err(p.kind(), what, want, got);
    if x0.len() != n || xt.len() != n {
        return Err(shape("x0 / x_target", format!("[{n}]"), format!("[{}] / [{}]", x0.len(), xt.len())));
    }
    if u.ncols() != p.control_dim() {
        return Err(shape("u", format!("[N, {}]", p.control_dim()), format!("[{steps}, {m}]")));
    }
    if idx.is_empty() || idx.len() != scale.len() || idx.iter().any(|&c| c >= n) {
        return Err(shape("idx / scale", format!("equal lengths >= 1, components < {n}"), format!("{idx:?} / {scale:?}")));
    }
    let bound = box_of(p, m);
    let err = |x_n: &DVector<f64>| idx.iter().zip(scale).map(|(&c, s)| ((x_n[c] - xt[c]) / s).powi(2)).sum::<f64>().sqrt();
    let sys = cost_gn_system(p, x0, u, dt, xt)?;
    let ok = p.is_success(&sys.x_n, xt);
    let a = DVector::from_iterator(idx.len(), idx.iter().zip(scale).map(|(&c, s)| (sys.x_n[c] - xt[c]) / s));
    let e = a.norm();
    let held = held_set(bound.as_ref(), &sys.u_flat, &sys.g);
    let free: Vec<usize> = (0..nm).filter(|&i| !held[i]).collect();
    if free.is_empty() || !sys.j.is_finite() {
        return Ok(None);
    }
    let nf = free.len();
    let c_full = DMatrix::from_fn(idx.len(), nf, |r, col| sys.s_n[(idx[r], free[col])] / scale[r]);
    let hf = DMatrix::from_fn(nf, nf, |i, j| sys.h[(free[i], free[j])]);
    let gf = DVector::from_fn(nf, |i, _| -sys.g[free[i]]);
    let d = (0..nf).map(|i| hf[(i, i)]).sum::<f64>() / nf as f64;
    // the constraint rows with `beta` free: the part of `C du` across `a` is zero
    let a_hat = if e > 1e-12 { Some(&a / e) } else { None };
    let across = a_hat.as_ref().map(|ah| {
        let proj = DMatrix::<f64>::identity(idx.len(), idx.len()) - ah * ah.transpose();
        proj * &c_full
    });
    let mut lambda = 1e-3;
    for _ in 0..8 {
        let mut damped = hf.clone();
        for i in 0..nf {
            damped[(i, i)] += lambda * d;
        }
        if let Some(ch) = damped.cholesky() {
            let h0 = ch.solve(&gf);
            // minimiser of the damped model subject to `rows du = rhs`
            let solve = |rows: &DMatrix<f64>, rhs: &DVector<f64>| -> Option<DVector<f64>> {
                let y = ch.solve(&rows.transpose()); // [nf, c]
                let schur = rows * &y;
                if !schur.iter().all(|v| v.is_finite()) {
                    return None;
                }
                let eps = 1e-12 * schur.norm().max(1e-300);
                let pinv = schur.pseudo_inverse(eps).ok()?;
                let nu = pinv * (rhs - rows * &h0);
                Some(&h0 + y * nu)
            };
            let du = match (&across, &a_hat) {
                (Some(rows), Some(ah)) => solve(rows, &DVector::zeros(idx.len())).and_then(|du| {
                    let beta = -(ah.transpose() * (&c_full * &du))[0] / e;
                    if beta < 0.0 {
                        solve(&c_full, &DVector::zeros(idx.len()))
                    } else if beta > 1.0 {
                        solve(&c_full, &(-&a))
                    } else {
                        Some(du)
                    }
                }),
                _ => solve(&c_full, &DVector::zeros(idx.len())),
            };
            if let Some(du) = du.filter(|v| v.iter().all(|x| x.is_finite())) {
                let cand = step_in_box(&sys.u_flat, &free, &du, bound.as_ref(), steps, m);
                let x = p.rollout(x0, &cand, dt)?;
                let x_n = x.row(steps).transpose();
                let jc = p.cost(&x, &cand, xt, dt);
                if jc < sys.j - 1e-9 * sys.j.abs() && err(&x_n) <= e + slack && (p.is_success(&x_n, xt) || !ok) {
                    return Ok(Some(cand));
                }
            }
        }
        lambda *= 4.0;
    }
    Ok(None)
}

/// Largest batch the f64 rollout path takes (see [`Simulator::rollout`]).
pub const FAST_BATCH: i64 = 8;
