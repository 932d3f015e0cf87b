//! The receding-horizon controller and its policies (ROS-free; the node is a thin layer over it).
//!
//! - [`policy`]: the [`policy::Policy`] trait; TRC and the classical solver.
//! - [`worker`]: the inference thread with per-job deadlines.
//! - [`receding`]: one cycle: guards, time-to-go, warm start / shift, deadline, anytime, fallback.

pub mod policy;
pub mod receding;
pub mod worker;

pub use policy::{policy_from_config, InjectedDelay, Iterate, PlanRequest, Policy, PolicyError, SolverPolicy, TrcPolicy};
pub use receding::{shift_controls, ControllerConfig, CycleOutcome, GoalInput, RecedingHorizon, Rejected, StateInput, Stats};
pub use worker::{InferenceWorker, WorkerEvent};
