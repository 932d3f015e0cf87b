//! The receding-horizon controller and its plug-ins (ROS-free; the node is a thin layer over it).
//!
//! - [`receding`]: the generic cycle: guards, time-to-go, candidate, one finish, publish.
//! - [`mission`]: what is specific to a task (descent's gate, terminal phase, correction and
//!   retiming; the fixed horizon of the benchmark problems).
//! - [`policy`]: the [`policy::Policy`] trait; TRC, the classical solver, a replay policy.
//! - [`worker`]: the inference thread with per-job deadlines.
//! - [`correction`]: the terminal correction (projected Gauss-Newton), the descent mission's
//!   safety layer.
//! - [`io`]: states and goals in, outcomes and counters out.

pub mod correction;
pub mod health;
pub mod io;
pub mod lifecycle;
pub mod mission;
pub mod policy;
pub mod receding;
pub mod worker;

pub use crate::config::ControllerConfig;
pub use io::{CycleOutcome, GoalInput, Rejected, StateInput, Stats, StatusCounts};
pub use mission::{mission_for, DescentMission, FixedHorizonMission, Mission, Phase};
pub use policy::{
    auto_device_rule, policy_from_config, resolve_device, DelayKnob, InjectedDelay, Iterate, PlanRequest, Policy, PolicyError, ReplayPolicy, SolverPolicy,
    TrcPolicy, ZemZevPolicy,
};
pub use receding::{shift_controls, RecedingHorizon, ReplayTiming};
pub use worker::{InferenceWorker, WorkerEvent};
