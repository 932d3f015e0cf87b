//! What goes into the controller (states, goals) and what comes out of one cycle (the plan,
//! why an input was refused, counters). Plain data, shared by the controller and the missions.

use thiserror::Error;

use crate::plan::{Plan, PlanStatus};

/// A state estimate handed to the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInput {
    /// Time the state is valid [s] (ROS time).
    pub stamp: f64,
    /// Frame of the state.
    pub frame_id: String,
    /// State x, length n, problem units.
    pub x: Vec<f64>,
}

/// A goal handed to the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalInput {
    /// Time the goal was issued [s] (0: "from the first state").
    pub stamp: f64,
    /// Frame of the target (`header.frame_id`); checked against
    /// `controller.plausibility.frame_id` when that is set.
    pub frame_id: String,
    /// Target state, length n (descent: the mass entry is ignored).
    pub x_target: Vec<f64>,
    /// Time-to-go [s] at `stamp`; 0 = the controller chooses.
    pub t_go: f64,
}

/// Why an input was rejected (each is logged by the node; the last good plan is kept).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum Rejected {
    /// The policy is unusable (load failure, model/problem mismatch).
    #[error("no usable policy: {0} (fix the model parameter; publishing the safe command)")]
    NoPolicy(String),
    /// No goal received yet.
    #[error("no goal received yet: publish a Goal on `goal` (transient-local); publishing the safe command")]
    NoGoal,
    /// Wrong state dimension.
    #[error("{what} has {got} entries, the {problem} problem needs n = {want}; input ignored")]
    WrongDimension {
        /// `state` or `goal`.
        what: &'static str,
        /// Entries received.
        got: usize,
        /// Entries needed.
        want: usize,
        /// Problem name.
        problem: String,
    },
    /// NaN or infinite entry.
    #[error("{what}[{index}] is {value}; input ignored")]
    NonFinite {
        /// `state` or `goal`.
        what: &'static str,
        /// Index of the first bad entry.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A value outside its physical range.
    #[error("{what} = {value} is outside {range}; input ignored")]
    OutOfRange {
        /// The entry.
        what: &'static str,
        /// The value.
        value: f64,
        /// The accepted range.
        range: String,
    },
    /// The state is too old (or stamped in the future, or the clock is not running yet).
    #[error("stale state: {age_s:.3} s old, more than max_state_age_s = {max_s} s from now (check the estimator, clocks and use_sim_time)")]
    Stale {
        /// Age [s].
        age_s: f64,
        /// Limit [s].
        max_s: f64,
    },
    /// The state is stamped before the last answered one (out of order, or the clock jumped
    /// backwards: a simulator reset, a bag played in a loop). A new goal starts afresh.
    #[error("state stamped {behind_s:.3} s before the last answered state (out of order, or time jumped backwards); input ignored, the last plan kept (after a clock reset, publish the goal again: it then starts afresh)")]
    OutOfOrder {
        /// How far behind [s].
        behind_s: f64,
    },
    /// Replay only (`trc replay --deadline recorded`): the recorded node refused this state,
    /// which the replay accepts (the node's clock, e.g. no `/clock` yet under use_sim_time, is
    /// not in the bag); the refusal is imposed so the controller's state stays the node's.
    #[error("refused as the recorded node refused it (its clock or an input the bag does not hold)")]
    RecordedRefusal,
    /// Descent: the landing time has passed without touchdown (and no touchdown gate is set).
    #[error("landing time passed {late_s:.2} s ago without touchdown; commanding the touchdown thrust")]
    PastLandingTime {
        /// Seconds past t_land.
        late_s: f64,
    },
    /// The controller could not choose t_go.
    #[error("cannot choose t_go from this state: {0}")]
    NoTimeToGo(String),
    /// An input in another frame than `controller.plausibility.frame_id`.
    #[error("{what} is in frame `{got}`, this controller takes `{want}` (controller.plausibility.frame_id); input ignored")]
    WrongFrame {
        /// `state` or `goal`.
        what: &'static str,
        /// The message's `header.frame_id`.
        got: String,
        /// The configured frame.
        want: String,
    },
    /// A new goal sooner after the previous new goal than
    /// `controller.plausibility.min_goal_interval_s` (each new goal drops the plan): held, the
    /// newest one, and taken by the first state after the interval.
    #[error(
        "new goal {since_s:.3} s after the previous new goal, sooner than min_goal_interval_s = {min_s} s (a new goal drops the plan); the previous goal stays until then, and the newest goal held is taken then"
    )]
    GoalRateLimited {
        /// Time since the previous new goal [s].
        since_s: f64,
        /// Limit [s].
        min_s: f64,
    },
    /// A goal stamped further ahead of the controller's clock than
    /// `controller.plausibility.max_goal_lead_s` (a clock or a sender that is wrong).
    #[error(
        "goal stamped {lead_s:.3} s ahead of this node's clock, more than max_goal_lead_s = {max_s} s (check clocks and use_sim_time); the previous goal stays"
    )]
    FutureGoal {
        /// How far ahead [s].
        lead_s: f64,
        /// Limit [s].
        max_s: f64,
    },
}

impl Rejected {
    /// A short stable name of the reason (the kind, and the entry for a range or a non-finite
    /// value): the key under which the node throttles repeated warnings, so that one reason
    /// does not hide another.
    pub fn reason(&self) -> String {
        match self {
            Rejected::NoPolicy(_) => "no_policy".into(),
            Rejected::NoGoal => "no_goal".into(),
            Rejected::WrongDimension { what, .. } => format!("wrong_dimension:{what}"),
            Rejected::NonFinite { what, .. } => format!("non_finite:{what}"),
            Rejected::OutOfRange { what, .. } => format!("out_of_range:{what}"),
            Rejected::Stale { .. } => "stale".into(),
            Rejected::OutOfOrder { .. } => "out_of_order".into(),
            Rejected::RecordedRefusal => "recorded_refusal".into(),
            Rejected::PastLandingTime { .. } => "past_landing_time".into(),
            Rejected::NoTimeToGo(_) => "no_time_to_go".into(),
            Rejected::WrongFrame { what, .. } => format!("wrong_frame:{what}"),
            Rejected::FutureGoal { .. } => "future_goal".into(),
            Rejected::GoalRateLimited { .. } => "goal_rate_limited".into(),
        }
    }
}

/// Outcome of one cycle.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    /// The plan to publish (always finite); its `status` says how it was obtained.
    pub plan: Plan,
    /// Why the input was rejected, if it was (status FAILED).
    pub rejected: Option<Rejected>,
    /// The policy's error, if it failed this cycle.
    pub policy_error: Option<String>,
    /// The answer came after the deadline (more than 1 ms late).
    pub late: bool,
}

/// Answers counted by status, with how many were late and the solve times of the refined ones:
/// the one accounting behind the controller's diagnostics ([`Stats`]) and every episode report
/// (`closed_loop::EpisodeLog`, shared by the lockstep loop and `trc_sim`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusCounts {
    /// Answers per status, indexed by [`PlanStatus`] as `u8`: CONVERGED, ANYTIME,
    /// FALLBACK_SHIFTED (a missed deadline), FAILED, TERMINAL (a planned terminal phase).
    pub by_status: [u64; PlanStatus::COUNT],
    /// Answers later than the deadline.
    pub late: u64,
    /// Solve times [ms] of the answers that waited on the policy ([`PlanStatus::is_refined`]),
    /// the newest 20,000 at most.
    pub solve_ms: Vec<f64>,
}

impl StatusCounts {
    /// Counts one answer.
    pub fn record(&mut self, status: PlanStatus, solve_ms: f64, late: bool) {
        const KEEP: usize = 20_000;
        self.by_status[status as usize] += 1;
        self.late += u64::from(late);
        if status.is_refined() {
            if self.solve_ms.len() >= KEEP {
                self.solve_ms.drain(..KEEP / 2);
            }
            self.solve_ms.push(solve_ms);
        }
    }

    /// Answers with `status`.
    pub fn count(&self, status: PlanStatus) -> u64 {
        self.by_status[status as usize]
    }

    /// All answers.
    pub fn total(&self) -> u64 {
        self.by_status.iter().sum()
    }
}

/// The controller's counters since start (the node's diagnostics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Every answer, by status.
    pub answers: StatusCounts,
    /// Cycles that moved the landing time (descent retiming).
    pub retimed: u64,
    /// Steps of the mission's classical finish (descent's terminal correction: Gauss-Newton; the
    /// fixed-horizon cost refinement: Levenberg-Marquardt), summed over the finished plans.
    pub correction_steps: u64,
    /// Plans finished by the mission (the denominator of `correction_steps`).
    pub finished: u64,
}

/// The linear velocity of a `nav_msgs/Odometry` in its header frame [m/s] (the odometry adapters
/// of the node and of the bag replay): REP 105 puts the twist in `child_frame_id`, so a twist
/// `v` there is turned by the pose's orientation `q_xyzw` (x, y, z, w; normalised here); with
/// `twist_in_child` false (an empty child frame, or the header's own) it is returned as it is,
/// as it is for an all-zero or non-finite orientation (unset: identity).
pub fn odometry_velocity(v: [f64; 3], q_xyzw: [f64; 4], twist_in_child: bool) -> [f64; 3] {
    let [x, y, z, w] = q_xyzw;
    let norm = (w * w + x * x + y * y + z * z).sqrt();
    if !twist_in_child || !norm.is_finite() || norm < 1e-9 {
        return v;
    }
    let r = nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(w, x, y, z)) * nalgebra::Vector3::from(v);
    [r[0], r[1], r[2]]
}
