//! The controller's health as a `diagnostic_msgs/DiagnosticStatus` reports it (issue:
//! reliability; ROS-free: the node copies a [`HealthReport`] into the message).
//!
//! Levels follow the diagnostic_msgs conventions (0 OK, 1 WARN, 2 ERROR) and describe the
//! recent window (the answers since the previous report), not the whole run:
//! - **ERROR**: no usable policy; a streak of at least [`FAILED_STREAK_ERROR`] FAILED answers in
//!   a row with a goal set (the node is publishing the safe command, not plans); or a goal is
//!   set and no state has arrived for more than `stale_after_s` since the later of the goal and
//!   the last state (the estimator or its link is down), unless the last answer was in the
//!   terminal phase (landed: WARN).
//! - **WARN**: no goal yet (states answered FAILED `no_goal` meanwhile are expected, not a
//!   streak); any FAILED, FALLBACK_SHIFTED or late answer in the window.
//! - **OK** otherwise.
//!
//! The last refusal's reason ([`Rejected::reason`]) and text stay in the key values until a later
//! one replaces them, so an operator sees why the last FAILED answer was given.

use crate::control::io::{CycleOutcome, Rejected};
use crate::plan::PlanStatus;

/// FAILED answers in a row from which the level is ERROR.
pub const FAILED_STREAK_ERROR: u64 = 5;

/// Counts of the answers in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Answers.
    pub answers: u64,
    /// FAILED answers.
    pub failed: u64,
    /// FALLBACK_SHIFTED answers.
    pub fallback: u64,
    /// Answers later than the deadline.
    pub late: u64,
}

/// Tracks what [`HealthReport`] needs, answer by answer.
#[derive(Debug, Clone, Default)]
pub struct Health {
    window: WindowCounts,
    failed_streak: u64,
    last_failure: Option<(String, String)>,
    last_state_at: Option<f64>,
    /// When the goal was set, if one is.
    goal_at: Option<f64>,
    last_status: Option<PlanStatus>,
}

/// One diagnostics report.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// 0 OK, 1 WARN, 2 ERROR (`diagnostic_msgs/DiagnosticStatus` levels).
    pub level: u8,
    /// One line for an operator: the level's cause first.
    pub message: String,
    /// The window's counts.
    pub window: WindowCounts,
    /// FAILED answers in a row up to now.
    pub failed_streak: u64,
    /// The last refusal: `(reason, text)` ([`Rejected::reason`] and its message).
    pub last_failure: Option<(String, String)>,
    /// Seconds since the last state arrived (`None`: none yet).
    pub state_age_s: Option<f64>,
}

impl Health {
    /// Records the answer `out` to a state that arrived at `now` [s] (any clock, the same as
    /// [`Self::report`]'s).
    pub fn record(&mut self, out: &CycleOutcome, now: f64) {
        self.last_state_at = Some(now);
        self.last_status = Some(out.plan.status);
        self.window.answers += 1;
        self.window.late += u64::from(out.late);
        match out.plan.status {
            // before a goal every state is answered FAILED by design: not a failure streak
            PlanStatus::Failed if matches!(out.rejected, Some(Rejected::NoGoal)) => self.window.failed += 1,
            PlanStatus::Failed => {
                self.window.failed += 1;
                self.failed_streak += 1;
            }
            PlanStatus::FallbackShifted => {
                self.window.fallback += 1;
                self.failed_streak = 0;
            }
            _ => self.failed_streak = 0,
        }
        if let Some(r) = &out.rejected {
            self.failure(r);
        } else if let Some(e) = &out.policy_error {
            self.last_failure = Some(("policy_error".into(), e.clone()));
        }
    }

    /// Records a refused goal (the previous goal stays).
    pub fn goal_refused(&mut self, r: &Rejected) {
        self.failure(r);
    }

    /// Records that a goal was set at `now` [s] (the clock of [`Self::record`]), or that none is
    /// (`None`).
    pub fn set_goal(&mut self, now: Option<f64>) {
        self.goal_at = now;
    }

    fn failure(&mut self, r: &Rejected) {
        self.last_failure = Some((r.reason(), r.to_string()));
    }

    /// The report at `now` [s] for a controller that has a usable policy (`has_policy`), with
    /// states older than `stale_after_s` [s] counted as an outage; starts the next window.
    pub fn report(&mut self, now: f64, has_policy: bool, stale_after_s: f64) -> HealthReport {
        let w = std::mem::take(&mut self.window);
        let state_age_s = self.last_state_at.map(|t| (now - t).max(0.0));
        // quiet since the later of the goal and the last state
        let quiet_s = self.goal_at.map(|g| now - self.last_state_at.map_or(g, |t| t.max(g)));
        let stale = quiet_s.is_some_and(|q| q > stale_after_s);
        let landed = self.last_status == Some(PlanStatus::Terminal);
        let (level, cause) = if !has_policy {
            (2, "no usable policy: every answer is the safe command (check the model parameter and the log)".to_string())
        } else if self.goal_at.is_none() {
            (1, "no goal yet: publish a Goal on `goal`".to_string())
        } else if self.failed_streak >= FAILED_STREAK_ERROR {
            let why = self.last_failure.as_ref().map(|(_, t)| t.as_str()).unwrap_or("see the log");
            (2, format!("{} FAILED answers in a row: {why}", self.failed_streak))
        } else if stale && landed {
            (1, format!("no state for {:.1} s since the terminal phase (landed?)", quiet_s.unwrap_or_default()))
        } else if stale {
            (
                2,
                match state_age_s {
                    Some(a) => format!("no state for {a:.1} s while a goal is set (estimator or its link down?)"),
                    None => "a goal is set but no state has arrived yet".to_string(),
                },
            )
        } else if w.failed + w.fallback + w.late > 0 {
            (1, format!("in the last window: {} FAILED, {} fallback, {} late of {} answers", w.failed, w.fallback, w.late, w.answers))
        } else {
            (0, format!("{} answers in the last window, all on time", w.answers))
        };
        HealthReport { level, message: cause, window: w, failed_streak: self.failed_streak, last_failure: self.last_failure.clone(), state_age_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn outcome(status: PlanStatus, rejected: Option<Rejected>, late: bool) -> CycleOutcome {
        let plan = Plan {
            stamp: 0.0,
            frame_id: String::new(),
            dt: 1.0,
            u: nalgebra::DMatrix::zeros(1, 1),
            x: nalgebra::DMatrix::zeros(2, 1),
            cost: 0.0,
            status,
            iterations: 0,
            solve_time_ms: 0.0,
        };
        CycleOutcome { plan, rejected, policy_error: None, late }
    }

    #[test]
    fn levels_follow_the_window_streaks_and_staleness() {
        let mut h = Health::default();
        assert_eq!(h.report(0.0, false, 0.5).level, 2, "no policy");
        // states before a goal are answered FAILED `no_goal`: expected, WARN, not a streak
        for k in 0..10 {
            h.record(&outcome(PlanStatus::Failed, Some(Rejected::NoGoal), false), 0.01 * k as f64);
        }
        let r = h.report(0.1, true, 0.5);
        assert_eq!((r.level, r.failed_streak), (1, 0), "{r:?}");
        h.set_goal(Some(0.2));
        assert_eq!(h.report(0.3, true, 0.5).level, 0, "a goal just set, no state yet: not stale");
        assert_eq!(h.report(0.8, true, 0.5).level, 2, "a goal and no state for 0.6 s");
        h.record(&outcome(PlanStatus::Converged, None, false), 1.0);
        let r = h.report(1.1, true, 0.5);
        assert_eq!((r.level, r.window.answers), (0, 1), "{r:?}");
        // a late answer: WARN for that window only
        h.record(&outcome(PlanStatus::Converged, None, true), 1.2);
        assert_eq!(h.report(1.3, true, 0.5).level, 1);
        h.record(&outcome(PlanStatus::Converged, None, false), 1.4);
        assert_eq!(h.report(1.5, true, 0.5).level, 0, "the window moved on");
        // FAILED: WARN, then ERROR from the fifth in a row, naming the reason
        let stale = Rejected::Stale { age_s: 2.0, max_s: 0.5 };
        for k in 0..FAILED_STREAK_ERROR {
            h.record(&outcome(PlanStatus::Failed, Some(stale.clone()), false), 1.6 + 0.01 * k as f64);
            if k == 0 {
                assert_eq!(h.report(1.6, true, 0.5).level, 1);
            }
        }
        let r = h.report(1.7, true, 0.5);
        assert_eq!(r.level, 2, "{r:?}");
        assert!(r.message.contains("5 FAILED answers in a row") && r.message.contains("stale state"), "{}", r.message);
        assert_eq!(r.last_failure.as_ref().map(|f| f.0.as_str()), Some("stale"));
        // one good answer ends the streak; the last reason stays for the operator
        h.record(&outcome(PlanStatus::Converged, None, false), 1.8);
        let r = h.report(1.85, true, 0.5);
        assert_eq!((r.level, r.failed_streak), (0, 0));
        assert_eq!(r.last_failure.map(|f| f.0), Some("stale".into()));
        // states stop arriving
        assert_eq!(h.report(5.0, true, 0.5).level, 2);
        // after the terminal phase they stop by design (landed): WARN
        h.record(&outcome(PlanStatus::Terminal, None, false), 6.0);
        assert_eq!(h.report(9.0, true, 0.5).level, 1);
    }
}
