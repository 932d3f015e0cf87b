//! `controller.*`: settings of the receding-horizon controller and its terminal correction
//! (all may change at run time, validated; see the README's parameter table).

use serde::{Deserialize, Serialize};

use crate::error::{non_negative, positive, ConfigError};

/// Controller settings (node parameters `controller.*`; all may change at run time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Deadline per cycle [s], from the cycle's start to the answer. Default 0.05.
    pub deadline_s: f64,
    /// Largest accepted age of a state, `now - stamp` [s]. Default 0.5.
    pub max_state_age_s: f64,
    /// Descent: follow the last plan when `t_go` is at most this [s]. Default 3.0.
    pub terminal_phase_s: f64,
    /// Outer iterations K at inference (0 = the K the model was trained with). Default 0.
    pub outer: u32,
    /// Warm start: refine from the shifted previous plan (true) or from the policy's own initial
    /// guess (false; TRC: the InitialDecoder). The shifted plan is the fallback either way.
    /// Default false: the shipped models were trained from the InitialDecoder only, and
    /// warm-starting them flew worse in closed loop (3 descent episodes, tiny model: median
    /// touchdown miss 1028 m warm vs 77 m cold).
    pub warm_start: bool,
    /// How long the vehicle holds each command [s] (its actuation period; normally the state
    /// rate's period). The published command is the plan's time-weighted mean control over this
    /// window, projected onto the admissible set (`RecedingHorizon::command`): when the plan's
    /// step `dt = t_go / N` is shorter than the hold (descent's last `N x hold` seconds) the
    /// first control alone would be held for several plan steps; the mean keeps the planned
    /// impulse. 0 = the first control `u_0`. Default 0.1 (10 Hz).
    pub command_hold_s: f64,
    /// Terminal correction (`src/control/correction.rs`): the descent mission's finish step
    /// applies it to every published candidate (a policy iterate, a shifted plan, the terminal
    /// phase's reference), once, on the control thread; the identity for problems without a
    /// terminal equality. Default enabled, in the plant model.
    pub terminal_correction: TerminalCorrection,
    /// Descent touchdown gate: the plan aims `gate_altitude_m` above the landing site with a
    /// vertical speed of `-gate_sink_rate_mps` at t_land, and from t_land the vehicle descends
    /// upright at that constant sink rate until touchdown (the constant-velocity terminal descent
    /// of flown landers). A plan that decelerates to exactly zero speed at the ground touches
    /// down at `sqrt(2 a dz)` for an altitude error `dz` (0.9 m/s for 10 cm at 4 m/s^2); the
    /// gate makes the touchdown speed the sink rate instead. 0 = aim at the ground. Default 1.0
    /// (20 seeded episodes with disturbances: 0.5 m / 0.3 m/s landed 50%, 1.0 m / 0.4 m/s 75%).
    pub gate_altitude_m: f64,
    /// Sink rate of the terminal descent below the gate [m/s] (> 0 when the gate is on).
    /// Default 0.35 (below the 0.5 m/s success speed with margin for thrust errors).
    pub gate_sink_rate_mps: f64,
    /// Largest thrust tilt from vertical the final descent's sink law commands [deg] (its
    /// horizontal correction toward the site). 0 = 90% of the problem's pointing limit (40.5 deg
    /// for the default vehicle), right for a plant that points its thrust at once (trc_sim). A
    /// vehicle that turns its engine through an attitude loop needs less: measured against the
    /// MuJoCo lander (docs/mujoco.md), 40.5 deg commands at 1 m made its tilt overshoot to 80 deg.
    pub gate_max_tilt_deg: f64,
    /// Velocity gain of the sink law's horizontal correction [1/s] (`k_v`; its position gain is
    /// `k_p = k_v^2 / 8`, damping ratio 1.4). Default 2 (trc_sim). It closes a loop through the
    /// vehicle's attitude: a vehicle whose engine turns slower than about 4 rad/s needs less
    /// (measured against the MuJoCo lander, docs/mujoco.md: 2 /s oscillated at +-1.5 m/s below
    /// the gate, 1 /s did not).
    pub gate_lateral_gain_per_s: f64,
    /// Position gain of the sink law's horizontal correction [1/s^2] (`k_p`); 0 (the default)
    /// = `k_v^2 / 8` (damping ratio 1.4). `k_v^2 / 4` is critically damped: a vehicle with a low
    /// `k_v` still pulls a gate arrival's offset in within the sink (docs/mujoco.md).
    pub gate_lateral_position_gain_per_s2: f64,
    /// Descent disturbance observer: time constant [s] of the estimate of the unmodelled
    /// acceleration `b` (measured velocity change minus the model's, low-pass filtered, see
    /// `src/control/mission/observer.rs`); the terminal correction and the sink aim with gravity
    /// `+ b`. 0 = off. Default 2.
    pub disturbance_observer_s: f64,
    /// Descent position filter gain `k` in (0, 1]: the position the controller plans from is the
    /// previous estimate advanced with the measured velocities, corrected by `k` times the
    /// measured position's innovation (`src/control/mission/observer.rs`); 1 = the measured
    /// position unchanged. Default 0.2.
    pub position_filter_gain: f64,
    /// Descent: also correct the previous finished plan, resampled to the state's time, and keep
    /// the better of it and the policy's corrected plan (`src/control/mission/descent.rs`).
    /// Default true.
    pub warm_correction: bool,
    /// Van der Pol and the double integrator (problems with a quadratic cost): at most this
    /// many Levenberg-Marquardt steps on the cost after the policy, on the control thread, none
    /// started after the cycle's deadline (`cost_gauss_newton_refine` in `src/problems/sim.rs`;
    /// the fixed-horizon mission's finish). 0 = off. Default 10 (Van der Pol validation split:
    /// the previous 2-step model's mean cost gap 14.9% -> 1.2% at 100% success, the shipped
    /// operator's 0.15% -> 0.01%; docs/refinement-log.md).
    pub cost_refinement_steps: usize,
    /// Plausibility gates on states and goals: inputs no vehicle of the problem can be in are
    /// refused with their own reason, the last good plan kept.
    pub plausibility: Plausibility,
}

/// Plausibility gates (`controller.plausibility.*`): what a state or a goal may say before the
/// controller refuses it as implausible (a broken estimator, a wrong frame, a wrong sender). The
/// descent mission checks every field (`src/control/mission/descent.rs`, `check_state` and
/// `check_goal`); the fixed-horizon problems the frame and the goal's stamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plausibility {
    /// Frame every state and goal must be in (`header.frame_id`); empty accepts any. Default
    /// empty (trc_sim and the shipped bags use `landing_site`).
    pub frame_id: String,
    /// Descent: lowest altitude a state may have above the landing site [m] (negative: below
    /// it, e.g. an estimator's error at touchdown). Default -10.
    pub min_altitude_m: f64,
    /// Descent: fastest speed a state may have, as a multiple of the problem's `v_max`. Default 2.
    pub max_speed_factor: f64,
    /// Descent: relative tolerance on the mass bounds: a state's mass must lie in
    /// `[m_dry (1 - tol), m_wet (1 + tol)]` (an estimate may be off by a few percent). Default 0.05.
    pub mass_tolerance: f64,
    /// Descent: largest distance [m] of a state from the landing site, and of a goal's target
    /// from the frame's origin (the operating envelope). Default 20000.
    pub max_range_m: f64,
    /// Largest time a goal may be stamped ahead of the controller's clock [s]. Default 1.
    pub max_goal_lead_s: f64,
    /// Least time between two new goals [s] on the node's clock: a new goal drops the plan, so
    /// a sender changing it faster would keep the vehicle without one (a re-sent identical goal
    /// is not limited). Default 1.
    pub min_goal_interval_s: f64,
    /// Descent: shortest t_go a goal may ask for [s] (0, "the controller chooses", is always
    /// allowed); the longest is the problem's (`(m_wet - m_dry) g0 Isp / rho1`: burning at
    /// the minimum thrust the whole time). Default 3.
    pub min_t_go_s: f64,
}

impl Default for Plausibility {
    fn default() -> Self {
        Self {
            frame_id: String::new(),
            min_altitude_m: -10.0,
            max_speed_factor: 2.0,
            mass_tolerance: 0.05,
            max_range_m: 20_000.0,
            max_goal_lead_s: 1.0,
            min_goal_interval_s: 1.0,
            min_t_go_s: 3.0,
        }
    }
}

impl Plausibility {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = "controller.plausibility";
        if !self.min_altitude_m.is_finite() {
            return Err(ConfigError::invalid(format!("{p}.min_altitude_m"), format!("must be finite, got {}", self.min_altitude_m)));
        }
        positive(&format!("{p}.max_speed_factor"), self.max_speed_factor)?;
        if !(0.0..1.0).contains(&self.mass_tolerance) {
            return Err(ConfigError::invalid(format!("{p}.mass_tolerance"), format!("must be in [0, 1), got {}", self.mass_tolerance)));
        }
        positive(&format!("{p}.max_range_m"), self.max_range_m)?;
        non_negative(&format!("{p}.max_goal_lead_s"), self.max_goal_lead_s)?;
        non_negative(&format!("{p}.min_t_go_s"), self.min_t_go_s)?;
        non_negative(&format!("{p}.min_goal_interval_s"), self.min_goal_interval_s)?;
        Ok(())
    }
}

/// Default of `controller.cost_refinement_steps` (and the step count of `trc eval`'s cost
/// refinement rows).
pub const DEFAULT_COST_REFINEMENT_STEPS: usize = 10;

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            deadline_s: 0.05,
            max_state_age_s: 0.5,
            terminal_phase_s: 3.0,
            outer: 0,
            warm_start: false,
            command_hold_s: 0.1,
            terminal_correction: TerminalCorrection::default(),
            gate_altitude_m: 1.0,
            gate_sink_rate_mps: 0.35,
            gate_max_tilt_deg: 0.0,
            gate_lateral_gain_per_s: 2.0,
            gate_lateral_position_gain_per_s2: 0.0,
            disturbance_observer_s: 2.0,
            position_filter_gain: 0.2,
            warm_correction: true,
            cost_refinement_steps: DEFAULT_COST_REFINEMENT_STEPS,
            plausibility: Plausibility::default(),
        }
    }
}

impl ControllerConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("controller.deadline_s", self.deadline_s)?;
        if self.deadline_s > 10.0 {
            return Err(ConfigError::invalid("controller.deadline_s", "must be at most 10 s"));
        }
        // below a millisecond no refinement can finish: every cycle would fall back
        if self.deadline_s < 1e-3 {
            return Err(ConfigError::invalid(
                "controller.deadline_s",
                format!("must be at least 0.001 s (no inference finishes sooner), got {}", self.deadline_s),
            ));
        }
        positive("controller.max_state_age_s", self.max_state_age_s)?;
        non_negative("controller.terminal_phase_s", self.terminal_phase_s)?;
        if self.cost_refinement_steps > 100 {
            return Err(ConfigError::invalid("controller.cost_refinement_steps", format!("must be <= 100, got {}", self.cost_refinement_steps)));
        }
        non_negative("controller.command_hold_s", self.command_hold_s)?;
        if self.command_hold_s > 10.0 {
            return Err(ConfigError::invalid("controller.command_hold_s", "must be at most 10 s"));
        }
        non_negative("controller.gate_altitude_m", self.gate_altitude_m)?;
        if self.gate_altitude_m > 0.0 {
            positive("controller.gate_sink_rate_mps", self.gate_sink_rate_mps)?;
        }
        if self.gate_altitude_m > 100.0 {
            return Err(ConfigError::invalid("controller.gate_altitude_m", format!("must be <= 100 m, got {}", self.gate_altitude_m)));
        }
        non_negative("controller.gate_sink_rate_mps", self.gate_sink_rate_mps)?;
        non_negative("controller.gate_max_tilt_deg", self.gate_max_tilt_deg)?;
        positive("controller.gate_lateral_gain_per_s", self.gate_lateral_gain_per_s)?;
        non_negative("controller.gate_lateral_position_gain_per_s2", self.gate_lateral_position_gain_per_s2)?;
        if self.gate_lateral_position_gain_per_s2 > 100.0 {
            return Err(ConfigError::invalid(
                "controller.gate_lateral_position_gain_per_s2",
                format!("must be <= 100 /s^2 (0: k_v^2 / 8), got {}", self.gate_lateral_position_gain_per_s2),
            ));
        }
        if self.gate_lateral_gain_per_s > 20.0 {
            return Err(ConfigError::invalid("controller.gate_lateral_gain_per_s", format!("must be <= 20 /s, got {}", self.gate_lateral_gain_per_s)));
        }
        if self.gate_max_tilt_deg >= 90.0 {
            return Err(ConfigError::invalid(
                "controller.gate_max_tilt_deg",
                format!("must be < 90 deg (0: 90% of the pointing limit), got {}", self.gate_max_tilt_deg),
            ));
        }
        if self.gate_sink_rate_mps > 10.0 {
            return Err(ConfigError::invalid("controller.gate_sink_rate_mps", format!("must be <= 10 m/s, got {}", self.gate_sink_rate_mps)));
        }
        non_negative("controller.disturbance_observer_s", self.disturbance_observer_s)?;
        if self.disturbance_observer_s > 100.0 {
            return Err(ConfigError::invalid("controller.disturbance_observer_s", format!("must be <= 100 s, got {}", self.disturbance_observer_s)));
        }
        if !(self.position_filter_gain > 0.0 && self.position_filter_gain <= 1.0) {
            return Err(ConfigError::invalid("controller.position_filter_gain", format!("must be in (0, 1], got {}", self.position_filter_gain)));
        }
        self.plausibility.validate()?;
        self.terminal_correction.validate("controller.terminal_correction")
    }
}

/// Which discrete model the correction aims the terminal state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionModel {
    /// The true dynamics with zero-order-hold controls, RK4 at the plan's `dt`
    /// ([`crate::problems::Problem::rollout`]): what a plant integrates. The receding-horizon default.
    Plant,
    /// TRC's in-loop simulator (descent: the LCvx acceleration-hold model), the model the
    /// demonstrations are optimal in and `trc eval` judges success in.
    InLoop,
}

/// Settings of the terminal correction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminalCorrection {
    /// Apply it (default true; `false` publishes the network's iterates unchanged).
    pub enabled: bool,
    /// The model the terminal state is computed in (default `plant`).
    pub model: CorrectionModel,
    /// Most Gauss-Newton steps per call (default 8; each is one rollout and one Jacobian sweep of
    /// N steps plus a `[c, c]` solve, tens of microseconds for descent).
    pub max_iterations: usize,
    /// Stop when every scaled terminal error component is below this, in units of the success
    /// tolerance (default 0.002: 2 mm and 1 mm/s with the default 1 m / 0.5 m/s criterion; the
    /// touchdown speed grows as `sqrt(2 a dz)` with an altitude error `dz` on a decelerating final
    /// approach, so centimetres matter).
    pub tol: f64,
    /// Receding-horizon descent only: when the corrected plan still misses (scaled error above
    /// `retime_threshold`, typically thrust saturated on the final burn), the controller also
    /// tries landing times moved by +0.25, +0.5, +1, +2, -0.25 or -0.5 s and moves t_land to the
    /// best that lands; this bounds the total move per goal [s]. 0 disables. Default 3.
    pub max_retime_s: f64,
    /// Scaled terminal error [tolerance units] above which retiming is tried. Default 0.5.
    pub retime_threshold: f64,
    /// With `enabled: false`: retime by asking the policy for plans at the moved landing times
    /// (TRC takes t_go as an input; each candidate is one refinement, judged in `model`) instead
    /// of not at all. Default true.
    pub retime_with_policy: bool,
    /// Thrust authority kept in reserve by the corrected plan: it is first corrected within the
    /// upper thrust bound `(1 - thrust_margin) rho2` (descent), so that a vehicle whose engines
    /// deliver a few percent less than commanded can still follow it; when the plan misses the
    /// aim point within that bound by more than `release_threshold`, the reserve is released
    /// (corrected again within `rho2`).
    /// Default 0.
    pub thrust_margin: f64,
    /// Scaled terminal error [tolerance units] of the reserve-keeping pass above which the thrust
    /// reserve is released. Default 0.5 (as `retime_threshold`); lower releases the reserve
    /// earlier on a thrust-saturated final burn instead of letting a small miss accumulate
    /// (docs/robustness.md, "Releasing the reserve early").
    pub release_threshold: f64,
    /// Receding-horizon descent only: when the finished plan meets the aim point only with the
    /// reserve released and more than 10 s are left, the landing time is moved later (by +0.5,
    /// +1, +2, +3 or +4 s) to the first time at which the plan keeps the reserve; this bounds
    /// the total of those moves per goal [s] (apart from `max_retime_s`). A plan flown at the
    /// minimum-fuel t_f ends on a burn at full thrust, so a thrust loss on it cannot be
    /// corrected; landing a little later keeps `thrust_margin` of braking authority for it at a
    /// few percent of fuel (docs/robustness.md, "Keeping the reserve by landing later").
    /// 0 disables. Default 0.
    pub reserve_retime_s: f64,
}

impl Default for TerminalCorrection {
    fn default() -> Self {
        Self {
            enabled: true,
            model: CorrectionModel::Plant,
            max_iterations: 8,
            tol: 0.002,
            max_retime_s: 3.0,
            retime_threshold: 0.5,
            retime_with_policy: true,
            thrust_margin: 0.0,
            release_threshold: 0.5,
            reserve_retime_s: 0.0,
        }
    }
}

impl TerminalCorrection {
    /// Checks ranges; `prefix` is the dotted path used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `max_iterations` over 100 or a `tol` that is not positive.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.max_iterations > 100 {
            return Err(ConfigError::invalid(format!("{prefix}.max_iterations"), format!("must be <= 100, got {}", self.max_iterations)));
        }
        positive(&format!("{prefix}.tol"), self.tol)?;
        non_negative(&format!("{prefix}.max_retime_s"), self.max_retime_s)?;
        if self.max_retime_s > 30.0 {
            return Err(ConfigError::invalid(format!("{prefix}.max_retime_s"), format!("must be <= 30 s, got {}", self.max_retime_s)));
        }
        positive(&format!("{prefix}.retime_threshold"), self.retime_threshold)?;
        positive(&format!("{prefix}.release_threshold"), self.release_threshold)?;
        non_negative(&format!("{prefix}.reserve_retime_s"), self.reserve_retime_s)?;
        if self.reserve_retime_s > 30.0 {
            return Err(ConfigError::invalid(format!("{prefix}.reserve_retime_s"), format!("must be <= 30 s, got {}", self.reserve_retime_s)));
        }
        if !(0.0..0.5).contains(&self.thrust_margin) {
            return Err(ConfigError::invalid(format!("{prefix}.thrust_margin"), format!("must be in [0, 0.5), got {}", self.thrust_margin)));
        }
        Ok(())
    }
}
