//! 3-DoF powered descent with mass depletion (docs/problems.md).
//!
//! State `x = [r (3) m, v (3) m/s, m kg]`, landing frame with z up and the landing site at the
//! target; control `u = T` thrust (3) [N]. Dynamics (Acikmese & Ploen 2007, eq. 1):
//!
//! `r' = v`, `v' = T / m + g - 2 w x v - w x (w x r)`, `m' = -|T| / (Isp g0)`,
//!
//! with the planet's rotation rate `w` (default zero; Acikmese & Ploen 2007 keep it).
//!
//! Constraints (Acikmese & Ploen 2007 §II; Blackmore, Acikmese & Scharf 2010 §II): thrust annulus
//! `rho1 <= |T| <= rho2`, pointing `angle(T, +z) <= theta_max`, glide slope (the position stays in
//! a cone of half-angle `90 deg - gamma_gs` above the landing site), `|v| <= v_max`, `m >= m_dry`.
//! Cost: fuel use `J = sum_k |T_k| dt` [N s] (propellant mass is `J / (Isp g0)`), optionally plus
//! `landing_weight * |(r_N, v_N) - target|^2`.
//!
//! The convex solver (lossless convexification) works in log-mass with the acceleration
//! `u = T / m` and slack `sigma >= |u|` as controls, where the dynamics are linear;
//! [`PoweredDescent::lcvx_discretization`] gives its exact zero-order-hold discretisation. The
//! plant holds the thrust `T` constant over a step instead, so the two differ to first order in dt
//! (tests bound the gap).

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::ProblemKind;
use super::{check_finite_states, ConstraintViolation, ControlConstraint, Problem, ViolationKind};
use crate::error::{non_negative, positive, ConfigError};

/// Powered-descent parameters. Vehicle defaults: the Mars lander of Acikmese & Ploen (2007) §V
/// and Blackmore et al. (2010) §VI (m_wet 1905 kg, m_dry 1505 kg, Isp 225 s, six 3100 N engines
/// canted 27 deg, throttle 0.3..0.8); gravity: Mars, docs/problems.md. Path-constraint defaults
/// (pointing, glide slope, v_max) are this project's choices, stated per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DescentParams {
    /// Gravity vector g [m/s^2] in the landing frame (z up). Default Mars (0, 0, -3.7114).
    pub gravity: [f64; 3],
    /// Planet rotation rate w [rad/s] in the landing frame (Coriolis and centrifugal terms).
    /// Default zero (docs/problems.md dynamics).
    pub planet_rotation: [f64; 3],
    /// Standard gravity g0 [m/s^2] for the Isp definition. Default 9.80665.
    pub g0: f64,
    /// Initial (wet) mass [kg]. Default 1905.
    pub m_wet: f64,
    /// Dry mass [kg]; the mass must stay above it. Default 1505.
    pub m_dry: f64,
    /// Specific impulse Isp [s]. Default 225.
    pub isp: f64,
    /// Number of engines. Default 6.
    pub n_engines: u32,
    /// Maximum thrust of one engine [N]. Default 3100.
    pub engine_thrust: f64,
    /// Engine cant angle [deg]; the net vertical thrust is cos(cant) of the sum. Default 27.
    pub cant_deg: f64,
    /// Minimum throttle [-]: rho1 = throttle_min * n_engines * engine_thrust * cos(cant). Default 0.3.
    pub throttle_min: f64,
    /// Maximum throttle [-]: rho2 = throttle_max * n_engines * engine_thrust * cos(cant). Default 0.8.
    pub throttle_max: f64,
    /// Explicit lower thrust bound rho1 [N], overriding the engine-derived value (papers that state
    /// rho1 directly). Default: none.
    pub rho1: Option<f64>,
    /// Explicit upper thrust bound rho2 [N], overriding the engine-derived value. Default: none.
    pub rho2: Option<f64>,
    /// Largest angle between thrust and +z, theta_max [deg]. Default 45 (project choice).
    pub pointing_max_deg: f64,
    /// Minimum glide-slope angle above the horizontal, gamma_gs [deg]: `r_z - r_t,z >=
    /// tan(gamma_gs) |r_xy - r_t,xy|`. Default 15 (project choice).
    pub glide_slope_deg: f64,
    /// Speed limit v_max [m/s]. Default 150 (project choice, above the ~100 m/s initial speeds).
    pub v_max: f64,
    /// Horizon N [nodes]. Default 50 (docs/problems.md); dt = t_f / N.
    pub horizon: usize,
    /// Nominal flight time [s] used when a goal leaves t_go to the controller before a solver has
    /// chosen t_f. Default 50.
    pub t_go_nominal: f64,
    /// Weight on the squared terminal position/velocity error in the cost [N s / m^2]. Default 0
    /// (pure fuel; the terminal condition is a constraint of the solver).
    pub landing_weight: f64,
    /// Success: touchdown position error below this [m]. Default 1 (docs/problems.md, the bar).
    pub success_position_tol: f64,
    /// Success: touchdown speed below this [m/s]. Default 0.5 (docs/problems.md, the bar).
    pub success_speed_tol: f64,
}

impl Default for DescentParams {
    fn default() -> Self {
        Self {
            gravity: [0.0, 0.0, -3.7114],
            planet_rotation: [0.0; 3],
            g0: 9.80665,
            m_wet: 1905.0,
            m_dry: 1505.0,
            isp: 225.0,
            n_engines: 6,
            engine_thrust: 3100.0,
            cant_deg: 27.0,
            throttle_min: 0.3,
            throttle_max: 0.8,
            rho1: None,
            rho2: None,
            pointing_max_deg: 45.0,
            glide_slope_deg: 15.0,
            v_max: 150.0,
            horizon: 50,
            t_go_nominal: 50.0,
            landing_weight: 0.0,
            success_position_tol: 1.0,
            success_speed_tol: 0.5,
        }
    }
}

impl DescentParams {
    /// Fuel-consumption coefficient alpha = 1 / (Isp g0) [s/m].
    pub fn alpha(&self) -> f64 {
        1.0 / (self.isp * self.g0)
    }

    /// Net thrust of all engines at full throttle, n * T_engine * cos(cant) [N].
    fn full_thrust(&self) -> f64 {
        self.n_engines as f64 * self.engine_thrust * self.cant_deg.to_radians().cos()
    }

    /// Lower thrust bound rho1 [N] (explicit `rho1`, else throttle_min * full thrust: 4971.8 N by default).
    pub fn rho1(&self) -> f64 {
        self.rho1.unwrap_or(self.throttle_min * self.full_thrust())
    }

    /// Upper thrust bound rho2 [N] (explicit `rho2`, else throttle_max * full thrust: 13258.2 N by default).
    pub fn rho2(&self) -> f64 {
        self.rho2.unwrap_or(self.throttle_max * self.full_thrust())
    }

    /// Checks ranges and consistency; `prefix` is the dotted path used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field (e.g. `m_dry` when `m_dry >= m_wet`,
    /// `rho1` when `rho1 >= rho2`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let f = |name: &str| format!("{prefix}.{name}");
        if self.gravity.iter().any(|g| !g.is_finite()) {
            return Err(ConfigError::invalid(f("gravity"), "every component must be finite"));
        }
        if self.gravity[2] >= 0.0 {
            return Err(ConfigError::invalid(f("gravity"), format!("z component must be < 0 (z is up), got {}", self.gravity[2])));
        }
        if self.planet_rotation.iter().any(|w| !w.is_finite()) {
            return Err(ConfigError::invalid(f("planet_rotation"), "every component must be finite"));
        }
        positive(&f("g0"), self.g0)?;
        positive(&f("m_wet"), self.m_wet)?;
        positive(&f("m_dry"), self.m_dry)?;
        if self.m_dry >= self.m_wet {
            return Err(ConfigError::invalid(
                f("m_dry"),
                format!("must be < m_wet (no propellant otherwise), got m_dry = {} >= m_wet = {}", self.m_dry, self.m_wet),
            ));
        }
        positive(&f("isp"), self.isp)?;
        if self.n_engines == 0 {
            return Err(ConfigError::invalid(f("n_engines"), "must be >= 1"));
        }
        positive(&f("engine_thrust"), self.engine_thrust)?;
        if !(0.0..90.0).contains(&self.cant_deg) {
            return Err(ConfigError::invalid(f("cant_deg"), format!("must be in [0, 90), got {}", self.cant_deg)));
        }
        if !(0.0..=1.0).contains(&self.throttle_min) {
            return Err(ConfigError::invalid(f("throttle_min"), format!("must be in [0, 1], got {}", self.throttle_min)));
        }
        if !(self.throttle_max > 0.0 && self.throttle_max <= 1.0) {
            return Err(ConfigError::invalid(f("throttle_max"), format!("must be in (0, 1], got {}", self.throttle_max)));
        }
        if self.throttle_min >= self.throttle_max {
            return Err(ConfigError::invalid(f("throttle_min"), format!("must be < throttle_max, got {} >= {}", self.throttle_min, self.throttle_max)));
        }
        if let Some(r1) = self.rho1 {
            non_negative(&f("rho1"), r1)?;
        }
        if let Some(r2) = self.rho2 {
            positive(&f("rho2"), r2)?;
        }
        if self.rho1() >= self.rho2() {
            return Err(ConfigError::invalid(
                f("rho1"),
                format!("lower thrust bound must be < rho2, got rho1 = {} N >= rho2 = {} N", self.rho1(), self.rho2()),
            ));
        }
        if !(self.pointing_max_deg > 0.0 && self.pointing_max_deg <= 180.0) {
            return Err(ConfigError::invalid(f("pointing_max_deg"), format!("must be in (0, 180], got {}", self.pointing_max_deg)));
        }
        if !(0.0..90.0).contains(&self.glide_slope_deg) {
            return Err(ConfigError::invalid(f("glide_slope_deg"), format!("must be in [0, 90), got {}", self.glide_slope_deg)));
        }
        positive(&f("v_max"), self.v_max)?;
        if self.horizon < 2 {
            return Err(ConfigError::invalid(f("horizon"), "must be >= 2"));
        }
        positive(&f("t_go_nominal"), self.t_go_nominal)?;
        non_negative(&f("landing_weight"), self.landing_weight)?;
        positive(&f("success_position_tol"), self.success_position_tol)?;
        positive(&f("success_speed_tol"), self.success_speed_tol)
    }
}

/// Exact zero-order-hold discretisation of the LCvx model for one step dt (Acikmese & Ploen 2007
/// §III, with the change of variables of their eq. 29): state `y = [r, v, z = ln m]` (7), control
/// `w = [u = T/m (3), sigma]` (4), `y_{k+1} = A y_k + B w_k + c`.
#[derive(Debug, Clone, PartialEq)]
pub struct LcvxDiscretization {
    /// State matrix A `[7, 7]`.
    pub a: DMatrix<f64>,
    /// Input matrix B `[7, 4]`.
    pub b: DMatrix<f64>,
    /// Constant (gravity) term c `[7]`.
    pub c: DVector<f64>,
}

/// Picard passes of [`PoweredDescent::rollout_accel_hold_fused`]'s mass recursion in f64 (its
/// error falls as `e_0 burn^p / p!` with burn = ln(m_0 / m_N) < 0.3 and the first-order guess's
/// `e_0 < burn^2 / 2`: 16 passes are below f64 rounding).
pub const FUSED_MASS_PASSES: usize = 16;

/// The same in f32 and lower precisions: 8 passes leave `0.045 * 0.3^8 / 8! < 1e-11`, far below
/// f32 rounding (6e-8), with 40 ops fewer per rollout than 16 (docs/gpu.md, op counts).
pub const FUSED_MASS_PASSES_F32: usize = 8;

/// The powered-descent problem (n = 7, m = 3).
#[derive(Debug, Clone)]
pub struct PoweredDescent {
    params: DescentParams,
    /// Gravity and the Jacobian's selection rows as tensors, made once per device and dtype
    /// ([`crate::tensor::ConstCache`]: no kernel per use on an accelerator).
    consts: crate::tensor::ConstCache,
}

impl PoweredDescent {
    /// Builds the problem from parameters.
    ///
    /// # Errors
    /// As [`DescentParams::validate`].
    pub fn new(params: DescentParams) -> Result<Self, ConfigError> {
        params.validate("descent")?;
        Ok(Self { params, consts: Default::default() })
    }

    /// The parameters.
    pub fn params(&self) -> &DescentParams {
        &self.params
    }

    /// Exact ZOH discretisation of the log-mass LCvx dynamics `r' = v`,
    /// `v' = u + g - 2 w x v - w x (w x r)`, `z' = -alpha sigma` for step `dt` [s], by the matrix
    /// exponential of the augmented system (Van Loan 1978): `exp([[A_c, B_c, c], [0, 0, 0]] dt)`.
    /// With `w = 0` this is the closed form `r + v dt + (u + g) dt^2 / 2`, `v + (u + g) dt`.
    pub fn lcvx_discretization(&self, dt: f64) -> LcvxDiscretization {
        let w = self.params.planet_rotation;
        let s = skew(&w);
        let s2 = &s * &s;
        let mut m = DMatrix::zeros(12, 12);
        for i in 0..3 {
            m[(i, 3 + i)] = 1.0;
            m[(3 + i, 7 + i)] = 1.0; // B_c: u
            m[(3 + i, 11)] = self.params.gravity[i]; // c: gravity
            for j in 0..3 {
                m[(3 + i, j)] = -s2[(i, j)];
                m[(3 + i, 3 + j)] = -2.0 * s[(i, j)];
            }
        }
        m[(6, 10)] = -self.params.alpha(); // B_c: sigma
        let e = (m * dt).exp();
        LcvxDiscretization { a: e.view((0, 0), (7, 7)).into_owned(), b: e.view((0, 7), (7, 4)).into_owned(), c: e.view((0, 11), (7, 1)).column(0).into_owned() }
    }

    /// Rollout in the LCvx discrete model ("acceleration hold"): over each step the engine keeps
    /// the acceleration `T_k / m_k` constant (throttling down as mass burns), so
    /// `r+ = r + v dt + (a + g) dt^2 / 2`, `v+ = v + (a + g) dt`, `m+ = m exp(-alpha |T_k| dt / m_k)`,
    /// exactly the model LCvx optimises (with rotation: the same ZOH matrices). Its optimal
    /// demonstrations land exactly in this model; the RK4 thrust-hold plant differs at first order
    /// in dt. `x0` length 7, `u` thrust `[N, 3]` [N] -> `[N+1, 7]`.
    ///
    /// # Errors
    /// [`crate::error::ProblemError::Shape`] for wrong dimensions.
    pub fn rollout_accel_hold(&self, x0: &DVector<f64>, u: &DMatrix<f64>, dt: f64) -> Result<DMatrix<f64>, crate::error::ProblemError> {
        super::check_len(self.kind(), "x0", x0.len(), 7)?;
        if u.ncols() != 3 {
            return Err(super::shape_err(self.kind(), "u", "[N, 3]".into(), format!("[{}, {}]", u.nrows(), u.ncols())));
        }
        let d = self.lcvx_discretization(dt);
        let mut out = DMatrix::zeros(u.nrows() + 1, 7);
        out.row_mut(0).copy_from(&x0.transpose());
        let mut y = x0.clone();
        y[6] = x0[6].ln();
        for k in 0..u.nrows() {
            let m = y[6].exp();
            let w = DVector::from_vec(vec![u[(k, 0)] / m, u[(k, 1)] / m, u[(k, 2)] / m, u.row(k).norm() / m]);
            y = &d.a * &y + &d.b * &w + &d.c;
            for i in 0..6 {
                out[(k + 1, i)] = y[i];
            }
            out[(k + 1, 6)] = y[6].exp();
        }
        Ok(out)
    }

    /// Batched [`PoweredDescent::rollout_accel_hold`]: `x0` `[B, 7]`, thrust `u` `[B, N, 3]`,
    /// `dt` `[B]` -> `[B, N+1, 7]`, differentiable, on the inputs' device and dtype.
    ///
    /// # Errors
    /// [`crate::error::ProblemError::Shape`] for wrong shapes, or a non-zero `planet_rotation`
    /// (the batched closed form covers the non-rotating model only).
    pub fn rollout_accel_hold_batch(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Result<Tensor, crate::error::ProblemError> {
        self.check_batch(x0, u, dt, "rollout_accel_hold_batch(x0, u, dt)", 0)?;
        let us = u.size();
        let dt = dt.unsqueeze(1);
        let g = self.gravity_row(x0);
        let alpha = self.params.alpha();
        let mut r = x0.narrow(1, 0, 3);
        let mut v = x0.narrow(1, 3, 3);
        let mut m = x0.narrow(1, 6, 1);
        let mut states = vec![x0.shallow_clone()];
        for k in 0..us[1] {
            let t = u.select(1, k);
            let a = &t / &m + &g;
            let t_norm = (&t * &t).sum_dim_intlist(&[1i64][..], true, t.kind()).clamp_min(1e-20).sqrt();
            r = &r + &v * &dt + &a * (&dt * &dt * 0.5);
            v = &v + &a * &dt;
            m = &m * (t_norm * (-alpha) * &dt / &m).exp();
            states.push(Tensor::cat(&[&r, &v, &m], 1));
        }
        Ok(Tensor::stack(&states, 1))
    }

    /// [`PoweredDescent::rollout_accel_hold_batch`] without its loop over the N steps: the same
    /// model in a few tens of batched kernels, for accelerators, where each of the loop's ~600
    /// small kernels costs a launch (docs/gpu.md). `x0` `[B, 7]`, thrust `u` `[B, N, 3]`, `dt`
    /// `[B]` -> `[B, N+1, 7]`, differentiable, on the inputs' device and dtype.
    ///
    /// With `s_k = ln m_k` and `c_k = alpha |T_k| dt`, the mass update `m+ = m exp(-c / m)` is
    /// `s_k = s_0 - sum_{i<k} c_i exp(-s_i)`: a Volterra sum, solved by [`FUSED_MASS_PASSES`]
    /// ([`FUSED_MASS_PASSES_F32`] below f64) Picard passes from the first-order guess `s_0 - sum_{i<k} c_i / m_0` (pass p is exact in
    /// its first p entries and shrinks the rest's error by `(burn)^p / p!`, burn = ln(m_0/m_N)
    /// < 0.3 for any thrust history within rho_max: below f64 rounding after 16). Then
    /// `a_k = T_k / m_k + g`, `v_{k+1} = v_0 + dt sum_{i<=k} a_i`,
    /// `r_{k+1} = r_0 + sum_{i<=k} (v_i dt + a_i dt^2 / 2)`: cumulative sums. Tests hold it equal
    /// to the loop to 1e-9 (f64).
    ///
    /// # Errors
    /// As [`PoweredDescent::rollout_accel_hold_batch`].
    pub fn rollout_accel_hold_fused(&self, x0: &Tensor, u: &Tensor, dt: &Tensor) -> Result<Tensor, crate::error::ProblemError> {
        self.check_batch(x0, u, dt, "rollout_accel_hold_fused(x0, u, dt)", 1)?;
        let n_steps = u.size()[1];
        let kind = u.kind();
        let dt3 = dt.view([-1, 1, 1]);
        let (r0, v0, m0) = (x0.narrow(1, 0, 3).unsqueeze(1), x0.narrow(1, 3, 3).unsqueeze(1), x0.narrow(1, 6, 1).unsqueeze(1)); // [B, 1, .]
        let t_norm = (u * u).sum_dim_intlist(&[2i64][..], true, kind).clamp_min(1e-20).sqrt(); // [B, N, 1]
        let c = t_norm * (&dt3 * self.params.alpha());
        let s0 = m0.log();
        let excl = |z: &Tensor| z.cumsum(1, kind) - z;
        // iterated on -s (bit for bit the negation of s: IEEE subtraction rounds symmetrically),
        // which saves a negation per pass
        let mut neg_s = excl(&c) / &m0 - &s0; // -s_0 .. -s_{N-1}
        let passes = if kind == tch::Kind::Double { FUSED_MASS_PASSES } else { FUSED_MASS_PASSES_F32 };
        for _ in 0..passes {
            neg_s = excl(&(&c * neg_s.exp())) - &s0;
        }
        let s = -&neg_s;
        let burn = &c * neg_s.exp();
        let m_next = (&s0 - burn.cumsum(1, kind)).exp(); // m_1 .. m_N
        let m = s.exp(); // m_0 .. m_{N-1}
        let g = self.gravity_row(x0).unsqueeze(1); // [1, 1, 3]
        let a = u / &m + g;
        let v_next = &v0 + a.cumsum(1, kind) * &dt3; // v_1 .. v_N
        let v = Tensor::cat(&[v0.shallow_clone(), v_next.narrow(1, 0, n_steps - 1)], 1); // v_0 .. v_{N-1}
        let r_next = &r0 + (v * &dt3 + &a * (&dt3 * &dt3 * 0.5)).cumsum(1, kind);
        let first = x0.unsqueeze(1);
        Ok(Tensor::cat(&[first, Tensor::cat(&[r_next, v_next, m_next], 2)], 1))
    }

    /// The terminal Jacobian `d x_N[idx] / d u` `[B, c, N*3]` (row-major over steps, then thrust
    /// components; physical units) of the acceleration-hold model
    /// ([`PoweredDescent::rollout_accel_hold_batch`]) from a rollout `traj` `[B, N+1, 7]` of `u`
    /// `[B, N, 3]` with steps `dt` `[B]`: batched tensor ops on their device, no loop over steps
    /// and no host synchronisation (the form an accelerator and a CUDA graph need; the CPU uses
    /// the per-sample f64 [`crate::problems::sim::terminal_sensitivity`], and tests hold the two
    /// equal to 1e-9). Derivation (adjoint of one step, docs/method.md "Sensitivity features"):
    /// the position and velocity adjoints are closed-form, `lambda_r = e_r`,
    /// `lambda_v(k+1) = e_v + (N-1-k) dt e_r`; the mass adjoint obeys the linear recursion
    /// `lambda_m(k) = A_k lambda_m(k+1) + beta_k`, `A_k = E_k (1 + c_k / m_k)` with
    /// `E_k = m_{k+1} / m_k`, `beta_k = -(T_k / m_k^2) . (e_r dt^2/2 + lambda_v(k+1) dt)`, solved
    /// with a cumulative product and a reverse cumulative sum; then
    /// `d x_N / d T_k = (e_r dt^2/2 + lambda_v(k+1) dt) / m_k - lambda_m(k+1) alpha dt E_k T_k^T / |T_k|`.
    ///
    /// # Errors
    /// [`crate::error::ProblemError::Shape`] for wrong shapes, an index past 6, or a non-zero
    /// `planet_rotation`.
    pub fn terminal_jacobian_accel_hold(&self, traj: &Tensor, u: &Tensor, dt: &Tensor, idx: &[usize]) -> Result<Tensor, crate::error::ProblemError> {
        let (ts, us) = (traj.size(), u.size());
        if us.len() != 3
            || us[2] != 3
            || ts.len() != 3
            || ts[0] != us[0]
            || ts[1] != us[1] + 1
            || ts[2] != 7
            || dt.size() != [us[0]]
            || idx.iter().any(|&i| i > 6)
        {
            return Err(super::shape_err(
                self.kind(),
                "terminal_jacobian_accel_hold(traj, u, dt, idx)",
                "[B, N+1, 7], [B, N, 3], [B], indices < 7".into(),
                format!("{ts:?}, {us:?}, {:?}, {idx:?}", dt.size()),
            ));
        }
        self.check_no_rotation("terminal_jacobian_accel_hold")?;
        let (b, n_steps, c) = (us[0], us[1], idx.len() as i64);
        let kind = u.kind();
        let alpha = self.params.alpha();
        let dt3 = dt.view([-1, 1, 1]); // [B, 1, 1]
        let dt4 = dt.view([-1, 1, 1, 1]);
        let m = traj.narrow(1, 0, n_steps).narrow(2, 6, 1); // m_k [B, N, 1]
        let m_next = traj.narrow(1, 1, n_steps).narrow(2, 6, 1);
        let e = &m_next / &m; // E_k
        let t_norm = (u * u).sum_dim_intlist(&[2i64][..], true, kind).clamp_min(1e-20).sqrt(); // [B, N, 1]
        let x = &t_norm * (&dt3 * alpha) / &m; // c_k / m_k
        let a_k = (&e * (x + 1.0)).squeeze_dim(2); // A_k [B, N]
                                                   // selection rows of the outputs: e_r, e_v [c, 3], e_m [c]
        let onehot: Vec<f64> = idx.iter().flat_map(|&i| (0..7).map(move |j| if j == i { 1.0 } else { 0.0 })).collect();
        let sel = self.consts.row(&onehot, u).view([c, 7]);
        let (e_r, e_v, e_m) = (sel.narrow(1, 0, 3), sel.narrow(1, 3, 3), sel.select(1, 6));
        // (N-1-k) for k = 0..N-1, made on the device
        let left = (Tensor::arange(n_steps, (kind, u.device())) * -1.0 + (n_steps - 1) as f64).view([1, n_steps, 1, 1]);
        let lam_v = e_v.view([1, 1, c, 3]) + &left * &dt4 * e_r.view([1, 1, c, 3]); // lambda_v(k+1) [B, N, c, 3]
        let d_pos_vel = e_r.view([1, 1, c, 3]) * (&dt4 * &dt4 * 0.5) + lam_v * &dt4; // dx_N/d(r,v)(k+1) . d(r,v)(k+1)/da_k
        let w = (u / (&m * &m)).unsqueeze(2); // T_k / m_k^2 [B, N, 1, 3]
        let beta = -(&w * &d_pos_vel).sum_dim_intlist(&[3i64][..], false, kind); // [B, N, c]
        let p_incl = a_k.cumprod(1, kind); // P_{k+1} = prod_{l<=k} A_l
        let p_excl = &p_incl / &a_k; // P_k
        let pb = p_excl.unsqueeze(2) * beta; // P_i beta_i [B, N, c]
        let tail = pb.flip([1]).cumsum(1, kind).flip([1]); // sum_{i>=k}
        let tail_after = Tensor::cat(&[tail.narrow(1, 1, n_steps - 1), tail.narrow(1, 0, 1).zeros_like()], 1); // sum_{i>k}
        let p_n = p_incl.narrow(1, n_steps - 1, 1).unsqueeze(2); // [B, 1, 1]
        let lam_m = (tail_after + p_n * e_m.view([1, 1, c])) / p_incl.unsqueeze(2); // lambda_m(k+1) [B, N, c]
        let dm_dt = (u * (&e * (&dt3 * -alpha)) / &t_norm).unsqueeze(2); // d m_{k+1} / d T_k [B, N, 1, 3]
        let jac = d_pos_vel / m.unsqueeze(3) + lam_m.unsqueeze(3) * dm_dt; // [B, N, c, 3]
        Ok(jac.permute([0, 2, 1, 3]).reshape([b, c, n_steps * 3]))
    }

    /// Gravity `[1, 3]` [m/s^2] on `like`'s device and dtype (cached).
    fn gravity_row(&self, like: &Tensor) -> Tensor {
        self.consts.row(&self.params.gravity, like).unsqueeze(0)
    }

    fn check_no_rotation(&self, what: &'static str) -> Result<(), crate::error::ProblemError> {
        if self.params.planet_rotation.iter().any(|w| *w != 0.0) {
            return Err(super::shape_err(self.kind(), what, "planet_rotation = 0".into(), format!("{:?}", self.params.planet_rotation)));
        }
        Ok(())
    }

    /// The shapes of a batched rollout's inputs (`x0` `[B, 7]`, `u` `[B, N, 3]` with N at least
    /// `min_steps`, `dt` `[B]`) and a non-rotating planet (the batched forms' model).
    fn check_batch(&self, x0: &Tensor, u: &Tensor, dt: &Tensor, what: &'static str, min_steps: i64) -> Result<(), crate::error::ProblemError> {
        let (xs, us) = (x0.size(), u.size());
        if xs.len() != 2 || xs[1] != 7 || us.len() != 3 || us[2] != 3 || us[0] != xs[0] || us[1] < min_steps || dt.size() != [xs[0]] {
            return Err(super::shape_err(self.kind(), what, format!("[B, 7], [B, N >= {min_steps}, 3], [B]"), format!("{xs:?}, {us:?}, {:?}", dt.size())));
        }
        self.check_no_rotation(what)
    }

    /// Exact Euclidean projection of a thrust `t` (length 3) onto the admissible set
    /// `{rho_min <= |T| <= rho_max, angle(T, +z) <= max_tilt}` (an annulus intersected with a cone).
    ///
    /// In spherical coordinates the set is `r d` with `r` in `[rho_min, rho_max]` and `d` in the
    /// spherical cap of half-angle `max_tilt`. For a fixed `d` the best `r` is
    /// `clamp(t . d, rho_min, rho_max)`, and the resulting distance falls as `t . d` grows, so the
    /// best `d` is the cap direction closest in angle to `t`: `t / |t|` inside the cone, else the
    /// cap boundary in `t`'s azimuth. For `t = 0` (every direction ties) it returns `rho_min` along
    /// +z; straight down (azimuth undefined) it picks the +x azimuth.
    pub fn project_thrust(t: &DVector<f64>, rho_min: f64, rho_max: f64, max_tilt: f64) -> DVector<f64> {
        let n = t.norm();
        let h = (t[0] * t[0] + t[1] * t[1]).sqrt();
        if n > 0.0 && t[2] >= n * max_tilt.cos() && (rho_min..=rho_max).contains(&n) {
            return t.clone(); // already admissible: exactly the identity
        }
        let d = if n == 0.0 {
            DVector::from_vec(vec![0.0, 0.0, 1.0])
        } else if t[2] >= n * max_tilt.cos() {
            t / n
        } else {
            let (s, c) = max_tilt.sin_cos();
            let (ax, ay) = if h > 0.0 { (t[0] / h, t[1] / h) } else { (1.0, 0.0) };
            DVector::from_vec(vec![s * ax, s * ay, c])
        };
        let r = t.dot(&d).clamp(rho_min, rho_max);
        d * r
    }

    /// Thrust-pointing angle from +z [rad] of thrust `t` (0 for zero thrust).
    pub fn tilt(t: &[f64]) -> f64 {
        let n = (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt();
        if n == 0.0 {
            0.0
        } else {
            (t[2] / n).clamp(-1.0, 1.0).acos()
        }
    }
}

fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// The cross-product matrix `S(w)` with `S(w) v = w x v`.
fn skew(w: &[f64; 3]) -> DMatrix<f64> {
    DMatrix::from_row_slice(3, 3, &[0.0, -w[2], w[1], w[2], 0.0, -w[0], -w[1], w[0], 0.0])
}

impl Problem for PoweredDescent {
    fn kind(&self) -> ProblemKind {
        ProblemKind::Descent
    }
    fn state_dim(&self) -> usize {
        7
    }
    fn control_dim(&self) -> usize {
        3
    }
    fn horizon(&self) -> usize {
        self.params.horizon
    }
    fn default_t_go(&self) -> f64 {
        self.params.t_go_nominal
    }
    fn control_constraint(&self) -> ControlConstraint {
        ControlConstraint::ThrustAnnulusCone { rho_min: self.params.rho1(), rho_max: self.params.rho2(), max_tilt: self.params.pointing_max_deg.to_radians() }
    }
    fn default_target(&self) -> DVector<f64> {
        let mut t = DVector::zeros(7);
        t[6] = self.params.m_dry;
        t
    }
    fn f(&self, x: &DVector<f64>, u: &DVector<f64>) -> DVector<f64> {
        let g = &self.params.gravity;
        let w = &self.params.planet_rotation;
        let m = x[6];
        let t_norm = u.norm();
        let (r, v) = ([x[0], x[1], x[2]], [x[3], x[4], x[5]]);
        let wv = cross(w, &v);
        let wwr = cross(w, &cross(w, &r));
        DVector::from_vec(vec![
            x[3],
            x[4],
            x[5],
            u[0] / m + g[0] - 2.0 * wv[0] - wwr[0],
            u[1] / m + g[1] - 2.0 * wv[1] - wwr[1],
            u[2] / m + g[2] - 2.0 * wv[2] - wwr[2],
            -self.params.alpha() * t_norm,
        ])
    }
    fn f_batch(&self, x: &Tensor, u: &Tensor) -> Tensor {
        let v = x.narrow(1, 3, 3);
        let m = x.narrow(1, 6, 1);
        // |T| with a floor of 1e-10 N under the root so the gradient at T = 0 stays finite.
        let t_norm = (u * u).sum_dim_intlist(&[1i64][..], true, u.kind()).clamp_min(1e-20).sqrt();
        let mut acc = u / &m + self.gravity_row(x);
        if self.params.planet_rotation.iter().any(|w| *w != 0.0) {
            // -2 w x v - w x (w x r) = -(2 S v + S^2 r), as a [B, 3] x [3, 3]' product
            let s = skew(&self.params.planet_rotation);
            let s2 = &s * &s;
            let st = Tensor::from_slice(s.transpose().as_slice()).view([3, 3]).to_kind(x.kind()).to_device(x.device());
            let s2t = Tensor::from_slice(s2.transpose().as_slice()).view([3, 3]).to_kind(x.kind()).to_device(x.device());
            // st holds S row-major (S' column-major read row-major); for row vectors (S v)' = v S'
            acc = acc - v.matmul(&st.transpose(0, 1)) * 2.0 - x.narrow(1, 0, 3).matmul(&s2t.transpose(0, 1));
        }
        let mdot = t_norm * (-self.params.alpha());
        Tensor::cat(&[v, acc, mdot], 1)
    }
    fn f_jacobian(&self, x: &DVector<f64>, u: &DVector<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
        let m = x[6];
        let s = skew(&self.params.planet_rotation);
        let s2 = &s * &s;
        let mut fx = DMatrix::zeros(7, 7);
        for i in 0..3 {
            for j in 0..3 {
                fx[(3 + i, j)] = -s2[(i, j)];
                fx[(3 + i, 3 + j)] = -2.0 * s[(i, j)];
            }
        }
        let mut fu = DMatrix::zeros(7, 3);
        let t_norm = u.norm();
        for i in 0..3 {
            fx[(i, 3 + i)] = 1.0;
            fx[(3 + i, 6)] = -u[i] / (m * m);
            fu[(3 + i, i)] = 1.0 / m;
            if t_norm > 0.0 {
                fu[(6, i)] = -self.params.alpha() * u[i] / t_norm;
            }
        }
        (fx, fu)
    }
    fn cost(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>, dt: f64) -> f64 {
        let fuel: f64 = (0..u.nrows()).map(|k| u.row(k).norm()).sum::<f64>() * dt;
        let n = u.nrows();
        let e: f64 = (0..6).map(|i| (x[(n, i)] - x_target[i]).powi(2)).sum();
        fuel + self.params.landing_weight * e
    }
    fn cost_batch(&self, x: &Tensor, u: &Tensor, x_target: &Tensor, dt: &Tensor) -> Tensor {
        let kind = u.kind();
        let n_steps = u.size()[1];
        let fuel = fuel_batch(u, dt);
        let e = x.select(1, n_steps).narrow(1, 0, 6) - x_target.narrow(1, 0, 6);
        fuel + (&e * &e).sum_dim_intlist(&[1i64][..], false, kind) * self.params.landing_weight
    }
    fn check_constraints(&self, x: &DMatrix<f64>, u: &DMatrix<f64>, x_target: &DVector<f64>) -> Vec<ConstraintViolation> {
        let p = &self.params;
        let (rho1, rho2) = (p.rho1(), p.rho2());
        let thrust_tol = 1e-6 * rho2;
        let angle_tol = 1e-6;
        let max_tilt = p.pointing_max_deg.to_radians();
        let tan_gs = p.glide_slope_deg.to_radians().tan();
        let mut out = check_finite_states(x);
        let mut push = |node, kind, amount| out.push(ConstraintViolation { node, kind, amount });
        for k in 0..u.nrows() {
            let t: Vec<f64> = u.row(k).iter().copied().collect();
            if t.iter().any(|v| !v.is_finite()) {
                push(k, ViolationKind::NonFinite, 0.0);
                continue;
            }
            let n = (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt();
            if n < rho1 - thrust_tol {
                push(k, ViolationKind::ThrustMin, rho1 - n);
            }
            if n > rho2 + thrust_tol {
                push(k, ViolationKind::ThrustMax, n - rho2);
            }
            let tilt = Self::tilt(&t);
            if n > 0.0 && tilt > max_tilt + angle_tol {
                push(k, ViolationKind::Pointing, tilt - max_tilt);
            }
        }
        for k in 0..x.nrows() {
            let (dx, dy, dz) = (x[(k, 0)] - x_target[0], x[(k, 1)] - x_target[1], x[(k, 2)] - x_target[2]);
            let need = tan_gs * (dx * dx + dy * dy).sqrt();
            if dz < need - 1e-6 * (1.0 + need) {
                push(k, ViolationKind::GlideSlope, need - dz);
            }
            let speed = (x[(k, 3)].powi(2) + x[(k, 4)].powi(2) + x[(k, 5)].powi(2)).sqrt();
            if speed > p.v_max * (1.0 + 1e-6) {
                push(k, ViolationKind::SpeedLimit, speed - p.v_max);
            }
            if x[(k, 6)] < p.m_dry * (1.0 - 1e-9) {
                push(k, ViolationKind::DryMass, p.m_dry - x[(k, 6)]);
            }
        }
        out
    }
    fn is_success(&self, x_final: &DVector<f64>, x_target: &DVector<f64>) -> bool {
        let pos = (x_final.rows(0, 3) - x_target.rows(0, 3)).norm();
        let vel = (x_final.rows(3, 3) - x_target.rows(3, 3)).norm();
        pos < self.params.success_position_tol && vel < self.params.success_speed_tol
    }
    /// Position and velocity (components 0..6), with the success tolerances.
    fn terminal_equality(&self) -> Option<(Vec<usize>, Vec<f64>)> {
        let (tp, tv) = (self.params.success_position_tol, self.params.success_speed_tol);
        Some(((0..6).collect(), vec![tp, tp, tp, tv, tv, tv]))
    }
    fn glide_slope_tan(&self) -> Option<f64> {
        Some(self.params.glide_slope_deg.to_radians().tan())
    }
}

/// The fuel term of the descent cost, `sum_k |u_k| dt` per sample `[B]` [N s] (propellant mass
/// times `Isp g0`, docs/problems.md), of thrust controls `u` `[B, N, 3]` [N] with steps `dt` `[B]`
/// [s]. Differentiable (the norm is floored at 1e-10 so its gradient stays finite).
pub fn fuel_batch(u: &Tensor, dt: &Tensor) -> Tensor {
    let kind = u.kind();
    (u * u).sum_dim_intlist(&[2i64][..], false, kind).clamp_min(1e-20).sqrt().sum_dim_intlist(&[1i64][..], false, kind) * dt
}
