//! Deterministic replay of a recorded flight through the controller core (`trc replay`): the
//! bag's states and goals are fed to a [`RecedingHorizon`] in bag order, in bag time (lockstep:
//! no DDS, no wall clock), and each answer is compared with the `control_sequence` the
//! recorded node published for the same state.
//!
//! The replay's clock (`now` of [`RecedingHorizon::step`], what the staleness guard compares a
//! state's stamp with) is the last `/clock` of the bag when it has one (a node under
//! `use_sim_time`), else the state's log time (the recorder's receive time, ROS time).
//!
//! Which states are answered: when the bag holds `control_sequence`, exactly the states the
//! recorded node answered (matched by stamp; the node answers the newest state of its queue, so
//! it may skip some), and every state before the first recorded answer (a recorder matches each
//! topic on its own, and may receive the node's answers later than its inputs; those cycles are
//! `Unrecorded`); without it, every state.
//!
//! Deadlines: [`DeadlineMode::Ignore`] gives every cycle 10 s (the most the config allows), so
//! every inference finishes: a pure function of the bag, identical on any machine; recorded
//! ANYTIME / FALLBACK_SHIFTED answers are then expected to differ and are counted apart.
//! [`DeadlineMode::Recorded`] imposes each recorded cycle's outcome instead
//! ([`ReplayTiming`]): a FALLBACK_SHIFTED cycle starts no inference, an ANYTIME cycle takes the
//! recorded number of iterations, and a FAILED cycle whose state the replay would accept is
//! refused all the same (the node's clock is not in the bag: under use_sim_time its first state
//! can arrive before its first `/clock`). What cannot be reproduced either way: an inference the
//! recorded node finished after its deadline and adopted in a later cycle (livelock guard), and
//! a terminal correction or cost refinement cut short by the deadline; `docs/rosbags.md` states the tolerances.

use std::collections::{HashMap, VecDeque};

use super::msgs::{from_cdr, types, ClockMsg, ControlSequenceMsg, Float64Msg, GoalMsg, OdometryMsg, StateMsg};
use super::{same_topic, Bag, BagError};
use crate::control::{RecedingHorizon, Rejected, ReplayTiming, StateInput};
use crate::plan::{Plan, PlanStatus};

/// How the replay treats deadlines (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadlineMode {
    /// Every cycle gets 10 s: pure function replay.
    #[default]
    Ignore,
    /// Each cycle's recorded outcome (FALLBACK_SHIFTED, ANYTIME after k iterations) is imposed.
    Recorded,
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Deadline treatment.
    pub deadline: DeadlineMode,
    /// Largest |u - u_rec| [problem units; descent N] for a cycle to match.
    pub tol_u: f64,
    /// Topic names (the node's relative names; compared without a leading `/`).
    pub topics: ReplayTopics,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { deadline: DeadlineMode::Ignore, tol_u: 1e-6, topics: ReplayTopics::default() }
    }
}

/// The topics a replay reads.
#[derive(Debug, Clone)]
pub struct ReplayTopics {
    /// `trc_control/State` input.
    pub state: String,
    /// `nav_msgs/Odometry` input (descent).
    pub odom: String,
    /// `std_msgs/Float64` mass input (with odom).
    pub mass: String,
    /// `trc_control/Goal` input.
    pub goal: String,
    /// `trc_control/ControlSequence` recorded answers.
    pub control_sequence: String,
    /// `rosgraph_msgs/Clock` (sim time).
    pub clock: String,
}

impl Default for ReplayTopics {
    fn default() -> Self {
        ReplayTopics {
            state: "state".into(),
            odom: "odom".into(),
            mass: "mass".into(),
            goal: "goal".into(),
            control_sequence: "control_sequence".into(),
            clock: "/clock".into(),
        }
    }
}

/// How a replayed cycle compares with the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same status and iterations, |u - u_rec| within the tolerance.
    Match,
    /// Depends on the recorded node's timing or clock, not compared: a recorded ANYTIME /
    /// FALLBACK_SHIFTED answer under [`DeadlineMode::Ignore`], or under
    /// [`DeadlineMode::Recorded`] a recorded FAILED answer to a state the replay accepts (the
    /// refusal is imposed; e.g. the node had no `/clock` yet).
    Timing,
    /// No recorded answer (a bag without `control_sequence`, or a state before its first answer).
    Unrecorded,
    /// Anything else.
    Differs,
}

/// One replayed cycle.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// Stamp of the state answered [s].
    pub stamp: f64,
    /// Bag log time of the state [s].
    pub log_time: f64,
    /// The replay's answer.
    pub status: PlanStatus,
    /// Iterations of the replay's answer.
    pub iterations: u32,
    /// Why the state was refused (FAILED), if it was.
    pub reason: Option<String>,
    /// The recorded answer's status (`None`: not recorded, or an unknown status byte).
    pub recorded_status: Option<PlanStatus>,
    /// Its iterations.
    pub recorded_iterations: Option<u32>,
    /// max |u - u_rec| over the horizon [problem units]; infinite on a shape mismatch.
    pub max_du: Option<f64>,
    /// Predicted terminal error of the replay's plan [tolerance units].
    pub terminal_error: Option<f64>,
    /// The same of the recorded plan.
    pub recorded_terminal_error: Option<f64>,
    /// The command sent for this answer is finite.
    pub command_finite: bool,
    /// After this cycle, the controller's last good plan is the one it held before (a refused
    /// state keeps it).
    pub kept_last_plan: bool,
    /// The comparison.
    pub verdict: Verdict,
}

/// A replay's result.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Every answered state, in bag order.
    pub cycles: Vec<CycleReport>,
    /// States of the bag the recorded node did not answer (skipped as not the newest).
    pub skipped_states: usize,
    /// Recorded answers no state of the bag matches (the state was lost by the recorder).
    pub unmatched_answers: usize,
    /// Goals, with the refusal reason of the refused ones.
    pub goals: Vec<(f64, Option<String>)>,
    /// Topics of the bag the replay does not read (warned about once).
    pub ignored_topics: Vec<String>,
    /// Messages of the replayed topics that do not decode as their type, with why.
    pub undecodable: Vec<String>,
}

impl ReplayReport {
    /// Cycles with `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cycles.iter().filter(|c| c.verdict == verdict).count()
    }

    /// Largest |u - u_rec| over the compared cycles.
    pub fn max_du(&self) -> f64 {
        self.cycles.iter().filter(|c| c.verdict != Verdict::Timing).filter_map(|c| c.max_du).fold(0.0, f64::max)
    }

    /// No cycle differs, every command was finite and every message decoded.
    pub fn passed(&self) -> bool {
        self.count(Verdict::Differs) == 0 && self.cycles.iter().all(|c| c.command_finite) && self.undecodable.is_empty()
    }

    /// A Markdown table of the cycles (`limit` rows at most, the differing ones first) and a
    /// summary line.
    pub fn table(&self, limit: usize) -> String {
        let mut rows: Vec<&CycleReport> = self.cycles.iter().filter(|c| c.verdict == Verdict::Differs).collect();
        rows.extend(self.cycles.iter().filter(|c| c.verdict != Verdict::Differs));
        let mut s = String::from("| stamp [s] | recorded | replayed | iterations rec/rep | max abs(du) | terminal error rec/rep | verdict | reason |\n|---|---|---|---|---|---|---|---|\n");
        let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        for c in rows.iter().take(limit) {
            s += &format!(
                "| {:.3} | {} | {} | {}/{} | {} | {}/{} | {:?} | {} |\n",
                c.stamp,
                c.recorded_status.map_or("-", |s| s.name()),
                c.status.name(),
                c.recorded_iterations.map_or("-".into(), |i| i.to_string()),
                c.iterations,
                c.max_du.map_or("-".into(), |d| format!("{d:.3e}")),
                opt(c.recorded_terminal_error, 3),
                opt(c.terminal_error, 3),
                c.verdict,
                c.reason.as_deref().unwrap_or(""),
            );
        }
        if rows.len() > limit {
            s += &format!("| ... {} more | | | | | | | |\n", rows.len() - limit);
        }
        s
    }

    /// One line: cycles by verdict, max |du|, skipped states.
    pub fn summary(&self) -> String {
        format!(
            "{} cycles: {} match, {} differ, {} timing-dependent (not compared), {} unrecorded; max |u - u_rec| {:.3e}; {} states the node skipped, {} answers without their state; {} undecodable messages",
            self.cycles.len(),
            self.count(Verdict::Match),
            self.count(Verdict::Differs),
            self.count(Verdict::Timing),
            self.count(Verdict::Unrecorded),
            self.max_du(),
            self.skipped_states,
            self.unmatched_answers,
            self.undecodable.len()
        )
    }
}

/// Stamps compare to the microsecond (the node's stamps go through a float round trip).
fn stamp_key(t: f64) -> i64 {
    (t * 1e6).round() as i64
}

fn max_abs_diff(plan: &Plan, rec: &ControlSequenceMsg) -> f64 {
    let m = plan.u.ncols();
    if rec.control_dim as usize != m || rec.u.len() != plan.u.len() {
        return f64::INFINITY;
    }
    let mut d: f64 = 0.0;
    for k in 0..plan.u.nrows() {
        for j in 0..m {
            let a = plan.u[(k, j)];
            let b = rec.u[k * m + j];
            d = d.max(if a.is_nan() && b.is_nan() { 0.0 } else { (a - b).abs() });
        }
    }
    if d.is_nan() {
        f64::INFINITY
    } else {
        d
    }
}

fn recorded_terminal_error(controller: &RecedingHorizon, rec: &ControlSequenceMsg) -> Option<f64> {
    controller.terminal_error(&rec.to_plan()?)
}

/// Replays `bag` through `controller` (fresh: no goal yet) and compares (see the module docs).
///
/// # Errors
/// None today beyond what reading the bag already reported; a message that does not decode is
/// listed in [`ReplayReport::undecodable`] and skipped (the node would never have received it).
pub fn replay(bag: &Bag, controller: &mut RecedingHorizon, opts: &ReplayOptions) -> Result<ReplayReport, BagError> {
    let t = &opts.topics;
    let mut report = ReplayReport::default();
    let has_clock = bag.on(&t.clock).next().is_some();
    // recorded answers by state stamp, in order
    let mut answers: HashMap<i64, VecDeque<ControlSequenceMsg>> = HashMap::new();
    let has_answers = bag.on(&t.control_sequence).next().is_some();
    for m in bag.on(&t.control_sequence) {
        match from_cdr::<ControlSequenceMsg>(types::CONTROL_SEQUENCE, &m.data) {
            Ok(a) => answers.entry(stamp_key(a.header.stamp.secs())).or_default().push_back(a),
            Err(e) => report.undecodable.push(format!("{} at log time {:.3} s: {e}", m.topic, m.log_time_ns as f64 * 1e-9)),
        }
    }
    let read = [&t.state, &t.odom, &t.mass, &t.goal, &t.control_sequence, &t.clock];
    for name in bag.topics.keys() {
        if !read.iter().any(|r| same_topic(name, r)) {
            report.ignored_topics.push(name.clone());
        }
    }
    let mut now = 0.0;
    let mut mass: Option<f64> = None;
    let mut answers_started = false;
    for m in &bag.messages {
        let log_time = m.log_time_ns as f64 * 1e-9;
        let bad = |e: BagError| format!("{} at log time {log_time:.3} s: {e}", m.topic);
        let state: Option<StateInput> = if same_topic(&m.topic, &t.clock) {
            match from_cdr::<ClockMsg>(types::CLOCK, &m.data) {
                Ok(c) => now = c.clock.secs(),
                Err(e) => report.undecodable.push(bad(e)),
            }
            None
        } else if same_topic(&m.topic, &t.goal) {
            match from_cdr::<GoalMsg>(types::GOAL, &m.data) {
                Ok(g) => {
                    // the node checks a goal's stamp against its clock when it arrives
                    let at = if has_clock { now } else { log_time };
                    let r = controller.set_goal_at(&g.to_input(), Some(at)).err().map(|e| e.to_string());
                    report.goals.push((g.header.stamp.secs(), r));
                }
                Err(e) => report.undecodable.push(bad(e)),
            }
            None
        } else if same_topic(&m.topic, &t.mass) {
            match from_cdr::<Float64Msg>(types::FLOAT64, &m.data) {
                Ok(f) if f.data.is_finite() && f.data > 0.0 => mass = Some(f.data),
                Ok(_) => {}
                Err(e) => report.undecodable.push(bad(e)),
            }
            None
        } else if same_topic(&m.topic, &t.state) {
            from_cdr::<StateMsg>(types::STATE, &m.data).map_err(|e| report.undecodable.push(bad(e))).ok().map(|s| s.to_input())
        } else if same_topic(&m.topic, &t.odom) {
            from_cdr::<OdometryMsg>(types::ODOMETRY, &m.data).map_err(|e| report.undecodable.push(bad(e))).ok().and_then(|o| o.to_descent_input(mass))
        } else {
            None
        };
        let Some(s) = state else { continue };
        if !has_clock {
            now = log_time;
        }
        let recorded = if has_answers {
            match answers.get_mut(&stamp_key(s.stamp)).and_then(|q| q.pop_front()) {
                Some(a) => {
                    answers_started = true;
                    Some(a)
                }
                // before the first recorded answer the recorder was not receiving the node's
                // answers yet (DDS matches each topic on its own): answered, not compared
                None if !answers_started => None,
                None => {
                    report.skipped_states += 1;
                    continue;
                }
            }
        } else {
            None
        };
        let timing = match (opts.deadline, recorded.as_ref().and_then(|r| r.plan_status())) {
            (DeadlineMode::Recorded, Some(PlanStatus::FallbackShifted)) => ReplayTiming::Missed,
            (DeadlineMode::Recorded, Some(PlanStatus::Anytime)) => ReplayTiming::Iterations(recorded.as_ref().map_or(0, |r| r.iterations)),
            (DeadlineMode::Recorded, Some(PlanStatus::Failed)) => ReplayTiming::Refused,
            _ => ReplayTiming::Live,
        };
        let before = controller.last_plan().map(|p| (p.stamp, p.status));
        let out = controller.step_timed(&s, now, timing);
        let after = controller.last_plan().map(|p| (p.stamp, p.status));
        let command_finite = controller.command(&out.plan).iter().all(|v| v.is_finite());
        let max_du = recorded.as_ref().map(|r| max_abs_diff(&out.plan, r));
        let rec_status = recorded.as_ref().and_then(|r| r.plan_status());
        let verdict = match (&recorded, rec_status) {
            (None, _) => Verdict::Unrecorded,
            (Some(_), Some(PlanStatus::Anytime | PlanStatus::FallbackShifted)) if opts.deadline == DeadlineMode::Ignore => Verdict::Timing,
            (Some(_), _) if matches!(out.rejected, Some(Rejected::RecordedRefusal)) => Verdict::Timing,
            (Some(r), Some(st)) if st == out.plan.status && r.iterations == out.plan.iterations && max_du.is_some_and(|d| d <= opts.tol_u) => Verdict::Match,
            _ => Verdict::Differs,
        };
        report.cycles.push(CycleReport {
            stamp: s.stamp,
            log_time,
            status: out.plan.status,
            iterations: out.plan.iterations,
            reason: out.rejected.as_ref().map(|r| r.to_string()),
            recorded_status: rec_status,
            recorded_iterations: recorded.as_ref().map(|r| r.iterations),
            max_du,
            terminal_error: controller.terminal_error(&out.plan).filter(|_| out.plan.status != PlanStatus::Failed),
            recorded_terminal_error: recorded.as_ref().filter(|r| r.status != PlanStatus::Failed as u8).and_then(|r| recorded_terminal_error(controller, r)),
            command_finite,
            kept_last_plan: before == after,
            verdict,
        });
    }
    report.unmatched_answers = answers.values().map(|q| q.len()).sum();
    Ok(report)
}
