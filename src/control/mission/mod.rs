//! Missions: everything about a control task that is specific to it, as a plug-in of the
//! generic receding-horizon pipeline ([`crate::control::RecedingHorizon`]).
//!
//! The controller runs the same cycle for every problem: guards -> time-to-go -> candidate plan
//! (a policy iterate, the shifted previous plan, or the reference of a terminal phase) -> one
//! [`Mission::finish`] -> publish. A mission decides:
//!
//! - which goals and states are acceptable ([`Mission::check_goal`], [`Mission::check_state`]);
//! - the aim point of the plans ([`Mission::aim`]; descent: the touchdown gate above the site);
//! - how `t_go` evolves ([`Mission::t_go`]): a receding horizon of fixed length `N dt`, or a
//!   shrinking one towards a landing time;
//! - the phase for a given `t_go` ([`Mission::phase`]): refine, follow the last refined plan, or
//!   a final descent that needs no plan;
//! - the safe command ([`Mission::safe_command`]) and the final-descent command;
//! - [`Mission::finish`]: the one step that turns a candidate into the published plan (descent:
//!   terminal correction and landing-time retiming; fixed-horizon problems: the cost refinement,
//!   `controller.cost_refinement_steps` Levenberg-Marquardt steps on the quadratic cost).
//!
//! Two implementations: [`DescentMission`] (powered descent) and [`FixedHorizonMission`] (Van der
//! Pol, the double integrator). [`mission_for`] picks the one a problem config asks for. A new
//! problem either reuses [`FixedHorizonMission`] or adds one file here.

mod descent;
mod fixed_horizon;
pub mod observer;

pub use descent::DescentMission;
pub use fixed_horizon::FixedHorizonMission;

use std::time::Instant;

use nalgebra::{DMatrix, DVector};

use super::io::{GoalInput, Rejected};
use crate::config::{ControllerConfig, ProblemConfig, ProblemKind};
use crate::error::ConfigError;
use crate::plan::Plan;

/// What the controller does with a state at a given time-to-go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Run the policy (refinement on the inference thread, anytime, deadline).
    Refine,
    /// Follow the last refined plan, resampled to the state's time and finished again (descent's
    /// last seconds, where the network was not trained). Status TERMINAL.
    FollowReference,
    /// The plan is over; fly [`Mission::final_descent`] (descent: the constant-sink descent below
    /// the touchdown gate). Status TERMINAL.
    FinalDescent,
}

/// A candidate plan after [`Mission::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Controls `[N, m]`, admissible.
    pub u: DMatrix<f64>,
    /// Time-to-go of the plan [s] (moved when the landing time was retimed).
    pub t_go: f64,
    /// The landing time moved by this many seconds (descent retiming), if it moved.
    pub retimed_s: Option<f64>,
    /// Steps the classical layer took in this finish (0 without one): descent's terminal
    /// correction (Gauss-Newton), the fixed-horizon cost refinement (Levenberg-Marquardt); what
    /// the network left it to do.
    pub correction_steps: usize,
}

/// The policy's plan for another time-to-go [s] (see [`Mission::finish`]).
pub type Replan<'a> = dyn FnMut(f64) -> Option<DMatrix<f64>> + 'a;

/// A task-specific plug-in of the receding-horizon controller. See the module docs.
///
/// Methods take the state `x` (length n, SI units), targets (length n), `t_go` [s], controls
/// `[N, m]`. Implementations are plain Rust (no ROS, no tch) and unit-tested beside their code.
pub trait Mission: Send + std::fmt::Debug {
    /// Takes new settings (live `controller.*` updates; already validated).
    fn set_config(&mut self, cfg: &ControllerConfig);

    /// Checks a goal (length already checked) and returns its normalised target (descent: the
    /// mass entry is set to the dry mass, it is free).
    ///
    /// # Errors
    /// [`Rejected`] naming the bad entry; the previous goal stays.
    fn check_goal(&self, goal: &GoalInput) -> Result<DVector<f64>, Rejected>;

    /// Starts a new (checked) goal: resets the per-goal state (landing time, retiming budget).
    fn start_goal(&mut self, goal: &GoalInput);

    /// Plausibility of a state `x` beyond dimension and finiteness (which the controller
    /// checks), for the goal's target `x_target` (`controller.plausibility`).
    ///
    /// # Errors
    /// [`Rejected::OutOfRange`] naming the entry and the accepted range.
    fn check_state(&self, x: &DVector<f64>, x_target: &DVector<f64>) -> Result<(), Rejected>;

    /// The state the plans aim at for the goal's target (descent: the touchdown gate).
    fn aim(&self, x_target: &DVector<f64>) -> DVector<f64>;

    /// Time-to-go [s] for the state `x` at `stamp` [s]; may be negative once a landing time has
    /// passed. Descent may solve for the landing time once per goal (a goal with `t_go = 0`).
    ///
    /// # Errors
    /// [`Rejected::NoTimeToGo`] when it cannot be chosen.
    fn t_go(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>) -> Result<f64, Rejected>;

    /// The phase at `t_go`.
    ///
    /// # Errors
    /// [`Rejected::PastLandingTime`] when the plan is over and the mission has no final descent.
    fn phase(&self, t_go: f64) -> Result<Phase, Rejected>;

    /// The final-descent plan for [`Phase::FinalDescent`]: controls `[N, m]` and their horizon [s].
    fn final_descent(&self, x: &DVector<f64>, x_target: &DVector<f64>) -> (DMatrix<f64>, f64);

    /// Turns a candidate (iterate, shifted plan or reference) into the plan to publish; no step
    /// starts after `deadline`. `replan(t_go)` asks the policy for a plan `[N, m]` from `x` to
    /// `aim` with another time-to-go [s] (`None`: no policy, or no time left); descent's retiming
    /// uses it when the terminal correction is off.
    #[allow(clippy::too_many_arguments)]
    fn finish(&mut self, stamp: f64, x: &DVector<f64>, aim: &DVector<f64>, t_go: f64, u: DMatrix<f64>, deadline: Instant, replan: &mut Replan<'_>) -> Finished;

    /// The command (length m) of a FAILED cycle: `x` if the state is usable, the goal's target if
    /// any, the last good plan if any, the time `stamp` [s], and why the cycle failed.
    fn safe_command(&self, x: Option<&DVector<f64>>, x_target: Option<&DVector<f64>>, last: Option<&Plan>, stamp: f64, why: &Rejected) -> DVector<f64>;

    /// A plan `[N, m]` from `x` to `aim` over `t_go` [s] computable in well under a millisecond,
    /// for a cycle where the policy has no iterate in time and there is no previous plan (the
    /// first cycles of a goal on an overloaded machine): it is finished and published as
    /// FALLBACK_SHIFTED instead of a FAILED safe command. Descent: the ZEM/ZEV plan. Default:
    /// none.
    fn first_plan(&self, _x: &DVector<f64>, _aim: &DVector<f64>, _t_go: f64) -> Option<DMatrix<f64>> {
        None
    }

    /// Sees every usable state `x` at `stamp` [s] (after the guards, before [`Mission::t_go`])
    /// with the command (length m) the controller sent at the previous answer, if any, and
    /// returns the state estimate the cycle plans from: where a mission estimates what its model
    /// lacks (descent: the disturbance observer and the position filter). Default: `x`.
    fn observe(&mut self, _stamp: f64, x: &DVector<f64>, _command: Option<&DVector<f64>>) -> DVector<f64> {
        x.clone()
    }

    /// The landing time [s], once known (shrinking-horizon missions).
    fn landing_time(&self) -> Option<f64> {
        None
    }
}

/// The mission of a problem: [`DescentMission`] for descent, [`FixedHorizonMission`] otherwise.
///
/// # Errors
/// [`ConfigError`] for an invalid problem or controller config.
pub fn mission_for(problem: &ProblemConfig, cfg: &ControllerConfig) -> Result<Box<dyn Mission>, ConfigError> {
    Ok(match problem.name {
        ProblemKind::Descent => Box::new(DescentMission::new(problem, cfg)?),
        ProblemKind::Vanderpol | ProblemKind::DoubleIntegrator => Box::new(FixedHorizonMission::new(problem, cfg)?),
    })
}

/// Checks that every entry of `v` is finite.
///
/// # Errors
/// [`Rejected::NonFinite`] naming the first bad entry of `what`.
pub(crate) fn check_finite(what: &'static str, v: &[f64]) -> Result<(), Rejected> {
    match v.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, value)) => Err(Rejected::NonFinite { what, index, value: *value }),
        None => Ok(()),
    }
}

/// Checks a goal's `t_go` [s]: finite, in `[0, 1e4]`.
///
/// # Errors
/// [`Rejected`] naming `goal.t_go`.
pub(crate) fn check_goal_t_go(t_go: f64) -> Result<(), Rejected> {
    if !t_go.is_finite() || t_go < 0.0 {
        return Err(Rejected::NonFinite { what: "goal.t_go", index: 0, value: t_go });
    }
    if t_go > 1e4 {
        return Err(Rejected::OutOfRange { what: "goal.t_go", value: t_go, range: "[0, 1e4] s".into() });
    }
    Ok(())
}
