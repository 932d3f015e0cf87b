//! `trc_node`: TRC as a receding-horizon controller over ROS 2 (r2r). A thin layer over
//! [`trc_control::control::RecedingHorizon`].
//!
//! ```text
//! trc_node --ros-args --params-file config/descent.yaml [-p controller.deadline_s:=0.05] [-p use_sim_time:=true]
//! ```
//!
//! Topics (relative names; remap or namespace as usual):
//! - in  `state` (`trc_control/State`, best effort, keep last 1): the state estimate x;
//! - in  `odom` (`nav_msgs/Odometry`) + `mass` (`std_msgs/Float64`): the descent state from
//!   Gazebo / a robot's estimator (position, linear velocity in the landing frame, mass);
//! - in  `goal` (`trc_control/Goal`, reliable, transient local): target and time-to-go;
//! - out `control_sequence` (`trc_control/ControlSequence`): the plan, stamped with the state's time;
//! - out `command`: the first control (descent: `geometry_msgs/WrenchStamped`, force = thrust [N];
//!   Van der Pol / double integrator: `std_msgs/Float64`);
//! - out `/diagnostics` (`diagnostic_msgs/DiagnosticArray`): solve-time stats, deadline misses,
//!   status counts, rate.
//!
//! Threads: DDS spinning on its own thread; the model on the inference thread; the control cycle
//! on the main thread. Parameters: every config entry (`ros2 param list`); `controller.*` may be
//! set at run time, the rest is refused (static).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trc_control::closed_loop::percentile;

use futures::{FutureExt, StreamExt};
use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use r2r::geometry_msgs::msg::WrenchStamped;
use r2r::nav_msgs::msg::Odometry;
use r2r::std_msgs::msg::{Float64, Header};
use r2r::trc_control::msg::{ControlSequence, Goal, State};
use r2r::{QosProfile, WrappedTypesupport};
use trc_control::bag::{schema::MsgPath, BagWriter, Qos};
use trc_control::config::ProblemKind;
use trc_control::control::health::Health;
use trc_control::control::lifecycle::{LifecycleState, Transition};
use trc_control::control::{CycleOutcome, RecedingHorizon, StateInput};
use trc_control::plan::PlanStatus;
use trc_control::ros::params::{node_startup_config, ParamStore};
use trc_control::ros::{self, descent_state_from_odometry, goal_from_msg, plan_to_msg, state_from_msg, thrust_to_wrench};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The control loop's bookkeeping: log throttling, health for `/diagnostics`, cycles in the
/// current report window and cycle times [ms].
struct LoopState {
    throttle: Throttle,
    window_cycles: u64,
    health: Health,
    cycle_ms: Vec<f64>,
}

fn main() -> ExitCode {
    ros::logging::init("trc_node");
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("trc_node: {e}");
            ExitCode::from(2)
        }
    }
}

enum Command {
    Thrust(r2r::Publisher<WrenchStamped>),
    Scalar(r2r::Publisher<Float64>),
}

/// Rate-limited log lines: per key (a reason), the first, then at most one per [`THROTTLE_S`].
#[derive(Default)]
struct Throttle(std::collections::HashMap<String, (Instant, u64, u64)>);

/// Least time between two log lines of one key [s].
const THROTTLE_S: f64 = 1.0;

impl Throttle {
    /// Logs `msg` at `level` unless a line of `key` went out less than [`THROTTLE_S`] ago; the
    /// next line that goes out says how many were held back and how many in all.
    fn log(&mut self, level: log::Level, key: &str, msg: &str) {
        let now = Instant::now();
        let e = self.0.entry(key.to_string()).or_insert((now, 0, 0));
        e.2 += 1;
        if e.2 > 1 && now.duration_since(e.0).as_secs_f64() < THROTTLE_S {
            e.1 += 1;
            return;
        }
        let held = std::mem::take(&mut e.1);
        e.0 = now;
        let note = if held > 0 { format!(" ({held} more like it in the last {THROTTLE_S} s held back, {} in all)", e.2) } else { String::new() };
        log::log!(level, "{msg}{note}");
    }

    fn warn(&mut self, key: &str, msg: &str) {
        self.log(log::Level::Warn, key, msg);
    }

    fn info(&mut self, key: &str, msg: &str) {
        self.log(log::Level::Info, key, msg);
    }
}

/// `node.record_to`: the node's own inputs and outputs into a rosbag2 MCAP folder. A write
/// error is logged once and ends the recording; the node goes on. What comes before the node's
/// clock runs (sim time before the first /clock reads 0) is held and written at the clock's
/// first time.
struct Recorder(Option<BagWriter>, Vec<(String, Vec<u8>)>);

impl Recorder {
    fn open(path: &str, package_root: Option<&std::path::Path>, descent: bool) -> Self {
        if path.is_empty() {
            return Recorder(None, Vec::new());
        }
        let mut dir = std::path::PathBuf::from(path);
        if dir.exists() {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            // Unix seconds
            dir = std::path::PathBuf::from(format!("{path}_{secs}"));
        }
        let topics = trc_control::bag::msgs::controller_topics(descent);
        let made = BagWriter::create(&dir, MsgPath::from_env(package_root)).and_then(|mut w| {
            for (t, ty) in topics {
                w.add_topic(t, ty, Qos::of_topic(t))?;
            }
            Ok(w)
        });
        match made {
            Ok(w) => {
                log::info!("recording inputs and outputs to {} (node.record_to)", dir.display());
                Recorder(Some(w), Vec::new())
            }
            Err(e) => {
                log::error!("node.record_to: cannot record ({e}); the node runs without recording");
                Recorder(None, Vec::new())
            }
        }
    }

    fn write<T: WrappedTypesupport>(&mut self, topic: &str, now_s: f64, msg: &T) {
        let Some(w) = self.0.as_mut() else { return };
        let bytes = match msg.to_serialized_bytes() {
            Ok(b) => b,
            Err(e) => {
                log::warn!("node.record_to: cannot serialize a {topic} message ({e}); skipped");
                return;
            }
        };
        if now_s <= 0.0 {
            if self.1.len() < 10_000 {
                self.1.push((topic.to_string(), bytes));
            }
            return;
        }
        let t = (now_s * 1e9) as u64;
        let res = self.1.drain(..).chain(std::iter::once((topic.to_string(), bytes))).try_for_each(|(tp, b)| w.write(&tp, t, &b)).map_err(|e| e.to_string());
        if let Err(e) = res {
            log::error!("node.record_to: write failed ({e}); recording stopped, the node goes on");
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some(w) = self.0.take() {
            let counts = w.counts();
            match w.finish() {
                Ok(dir) => log::info!("recording closed: {} ({} messages)", dir.display(), counts.iter().map(|(_, n)| n).sum::<u64>()),
                Err(e) => log::error!("node.record_to: closing the bag failed: {e}"),
            }
        }
    }
}

/// The node's clock: the last `/clock` under use_sim_time (0 until one arrives, which the
/// staleness guard then refuses with its reason), else the ROS (system) clock.
struct Clock {
    ros: Arc<Mutex<r2r::Clock>>,
    sim: Option<Arc<Mutex<f64>>>,
}

fn now_secs(clock: &Clock) -> f64 {
    match &clock.sim {
        Some(t) => t.lock().map(|t| *t).unwrap_or(0.0),
        None => clock.ros.lock().ok().and_then(|mut c| c.get_now().ok()).map(|d| d.as_secs_f64()).unwrap_or(0.0),
    }
}

use r2r::lifecycle_msgs::msg::{
    State as LcState, Transition as LcTransition, TransitionDescription as LcTransitionDescription, TransitionEvent as LcTransitionEvent,
};
use r2r::lifecycle_msgs::srv::{
    ChangeState as LcChangeState, GetAvailableStates as LcGetAvailableStates, GetAvailableTransitions as LcGetAvailableTransitions, GetState as LcGetState,
};

fn lc_state(s: LifecycleState) -> LcState {
    LcState { id: s.id(), label: s.label().into() }
}

/// The work of lifecycle transition `t`: configure loads the model from the current (live)
/// configuration without warm-up and applies a goal held while unconfigured; activate runs the
/// warm-up passes; cleanup and shutdown drop the model; deactivate only stops answering.
/// `Err` says why the transition failed (the node then stays in, or goes back to, its start state).
fn transition(
    t: Transition,
    controller: &mut Option<RecedingHorizon>,
    live: &Arc<Mutex<trc_control::config::TrcConfig>>,
    package_root: Option<&std::path::Path>,
    pending_goal: &mut Option<Goal>,
    clock: &Clock,
) -> Result<(), String> {
    let cfg = live.lock().map_err(|_| "the configuration lock is poisoned".to_string())?.clone();
    match t {
        Transition::Configure => {
            let mut load_cfg = cfg.clone();
            load_cfg.node.warmup_passes = 0; // activate warms up
            let mut c = RecedingHorizon::from_config(&load_cfg, package_root).map_err(|e| e.to_string())?;
            if !c.has_policy() {
                return Err(format!("no policy: {}", c.policy_name()));
            }
            if let Some(g) = pending_goal.take() {
                if let Err(e) = c.set_goal_at(&goal_from_msg(&g), Some(now_secs(clock))) {
                    log::warn!("the goal held while unconfigured is refused: {e}");
                }
            }
            *controller = Some(c);
            Ok(())
        }
        Transition::Activate => {
            let c = controller.as_mut().ok_or("no controller (configure first)")?;
            let passes = cfg.node.warmup_passes;
            if passes > 0 {
                let ms = c.warm_up(passes, Duration::from_secs(60)).ok_or("the warm-up passes did not finish within 60 s")?;
                log::info!("lifecycle: {passes} warm-up passes, the last {ms:.2} ms");
            }
            Ok(())
        }
        Transition::Deactivate => Ok(()),
        Transition::Cleanup | Transition::UnconfiguredShutdown | Transition::InactiveShutdown | Transition::ActiveShutdown => {
            *controller = None;
            Ok(())
        }
    }
}

fn run() -> AnyResult<()> {
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, "trc_node", "")?;
    if let Err(e) = ros::logging::attach_rosout(&mut node) {
        log::warn!("no /rosout publisher ({e}); logs go to the console only");
    }
    let cfg = node_startup_config(&node)?;
    // the package root: the params file's folder's parent (config/descent.yaml -> .)
    let args: Vec<String> = std::env::args().collect();
    let package_root = args
        .windows(2)
        .find(|w| w[0] == "--params-file")
        .and_then(|w| std::path::Path::new(&w[1]).canonicalize().ok())
        .and_then(|p| p.parent().and_then(|d| d.parent()).map(|d| d.to_path_buf()));
    // a scenario (sim.scenario) may change the vehicle: fly the problem trc_sim flies
    let mut cfg = cfg;
    if let Some(s) = trc_control::closed_loop::scenario_of(&cfg, package_root.as_deref())? {
        s.apply(&mut cfg)?;
        log::info!("scenario {}: its vehicle applied to the problem", s.name);
    }
    let live = Arc::new(Mutex::new(cfg.clone()));
    let (param_future, mut param_events) = node.make_derived_parameter_handler(Arc::new(Mutex::new(ParamStore { cfg: live.clone() })))?;
    log::info!("problem {}, deadline {} ms, use_sim_time {}", cfg.problem.name, cfg.controller.deadline_s * 1e3, cfg.use_sim_time);

    let sensor = QosProfile::default().best_effort().keep_last(1);
    let mut state_sub = node.subscribe::<State>("state", sensor.clone())?;
    let mut odom_sub = node.subscribe::<Odometry>("odom", sensor)?;
    let mut mass_sub = node.subscribe::<Float64>("mass", QosProfile::default().best_effort().keep_last(1))?;
    let mut goal_sub = node.subscribe::<Goal>("goal", QosProfile::default().keep_last(1).transient_local())?;
    let seq_pub = node.create_publisher::<ControlSequence>("control_sequence", QosProfile::default().keep_last(10))?;
    let marker_pub = if cfg.node.markers && cfg.problem.name == ProblemKind::Descent {
        Some(node.create_publisher::<r2r::visualization_msgs::msg::MarkerArray>("plan_markers", QosProfile::default().keep_last(1))?)
    } else {
        None
    };
    let command = match cfg.problem.name {
        ProblemKind::Descent => Command::Thrust(node.create_publisher::<WrenchStamped>("command", QosProfile::default().keep_last(10))?),
        _ => Command::Scalar(node.create_publisher::<Float64>("command", QosProfile::default().keep_last(10))?),
    };
    let diag_pub = node.create_publisher::<DiagnosticArray>("/diagnostics", QosProfile::default())?;
    // the node's full name (`/vehicle_1/trc_node` in a namespace): one status per vehicle on /diagnostics
    let diag_name = node.fully_qualified_name().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_else(|_| "trc_node".into());
    // Sim time: follow /clock ourselves (r2r's TimeSource is compiled in only when its build
    // script emitted the rosgraph_msgs cfg, which a cached re-run of that script skips).
    let mut clock_sub = if cfg.use_sim_time {
        Some(node.subscribe::<r2r::rosgraph_msgs::msg::Clock>("/clock", QosProfile::default().best_effort().keep_last(1))?)
    } else {
        None
    };
    let sim_now: Arc<Mutex<f64>> = Arc::new(Mutex::new(0.0));
    let clock = Clock { ros: node.get_ros_clock(), sim: cfg.use_sim_time.then(|| sim_now.clone()) };

    // the model on its own thread (loaded and warmed up there); a model that cannot be loaded
    // leaves the node up, answering every state FAILED with the safe command
    // lifecycle (node.autostart false): the standard lifecycle_msgs services on ~/; the model
    // loads in configure and warms up in activate; only an active node answers
    let mut change_state_srv = node.create_service::<LcChangeState::Service>("~/change_state", QosProfile::default())?;
    let mut get_state_srv = node.create_service::<LcGetState::Service>("~/get_state", QosProfile::default())?;
    let mut get_states_srv = node.create_service::<LcGetAvailableStates::Service>("~/get_available_states", QosProfile::default())?;
    let mut get_transitions_srv = node.create_service::<LcGetAvailableTransitions::Service>("~/get_available_transitions", QosProfile::default())?;
    let transition_pub = node.create_publisher::<LcTransitionEvent>("~/transition_event", QosProfile::default().keep_last(10))?;
    let (mut controller, mut lstate) = if cfg.node.autostart {
        (Some(RecedingHorizon::from_config(&cfg, package_root.as_deref())?), LifecycleState::Active)
    } else {
        log::info!("lifecycle: unconfigured (node.autostart false); waiting for configure on ~/change_state");
        (None, LifecycleState::Unconfigured)
    };
    let mut pending_goal: Option<Goal> = None;
    let mut rec = Recorder::open(&cfg.node.record_to, package_root.as_deref(), cfg.problem.name == ProblemKind::Descent);

    // DDS on its own thread
    let node = Arc::new(Mutex::new(node));
    let running = Arc::new(AtomicBool::new(true));
    let spinner = {
        let (node, running) = (node.clone(), running.clone());
        std::thread::Builder::new().name("dds-spin".into()).spawn(move || {
            while running.load(Ordering::Relaxed) {
                if let Ok(mut n) = node.lock() {
                    n.spin_once(Duration::from_millis(2));
                }
            }
        })?
    };

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let diag_period = Duration::from_secs_f64(cfg.node.diagnostics_period_s);
    let result: AnyResult<()> = rt.block_on(async {
        tokio::spawn(param_future);
        let mut diag_tick = tokio::time::interval(diag_period);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut mass: Option<f64> = None;
        // the loop's own bookkeeping, shared by the state and odometry branches and the report
        let mut lp = LoopState { throttle: Throttle::default(), window_cycles: 0, health: Health::default(), cycle_ms: Vec::new() };
        let started = Instant::now();
        let mut last_diag = Instant::now();
        // `stamp`: the state message's own header stamp, copied into the answers to it: a
        // float of seconds since the epoch resolves 240 ns, so seconds -> Time is not exact
        let cycle = |controller: &mut RecedingHorizon, s: StateInput, stamp: Time, lp: &mut LoopState, rec: &mut Recorder| {
            let LoopState { throttle, cycle_ms, health, window_cycles } = lp;
            *window_cycles += 1;
            let t_in = Instant::now();
            let out: CycleOutcome = controller.step(&s, now_secs(&clock));
            health.record(&out, started.elapsed().as_secs_f64());
            if let Some(r) = &out.rejected {
                throttle.warn(&r.reason(), &format!("state at t = {:.3} rejected: {r}", s.stamp));
            }
            if let Some(e) = &out.policy_error {
                throttle.warn("policy", &format!("policy error: {e}"));
            }
            if out.late {
                throttle.warn("late", &format!("answer {:.1} ms after the cycle started, deadline {:.1} ms", out.plan.solve_time_ms, controller.config().deadline_s * 1e3));
            }
            let answers_state = out.plan.stamp == s.stamp;
            let mut seq = plan_to_msg(&out.plan);
            if answers_state {
                seq.header.stamp = stamp.clone();
            }
            if let Err(e) = seq_pub.publish(&seq) {
                throttle.warn("publish", &format!("cannot publish control_sequence: {e}"));
            }
            let u_cmd = controller.command(&out.plan);
            // published first, recorded after: the recording never delays the command
            let (sent, w, f) = match &command {
                Command::Thrust(p) => {
                    let mut w = thrust_to_wrench(&out.plan, &u_cmd);
                    if answers_state {
                        w.header.stamp = stamp.clone();
                    }
                    (p.publish(&w), Some(w), None)
                }
                Command::Scalar(p) => {
                    let f = Float64 { data: u_cmd[0] };
                    (p.publish(&f), None, Some(f))
                }
            };
            if let Err(e) = sent {
                throttle.warn("publish", &format!("cannot publish command: {e}"));
            }
            if let Some(p) = &marker_pub {
                let site = controller.goal_target().cloned();
                let _ = p.publish(&trc_control::ros::markers::plan_markers(&out.plan, site.as_ref(), &u_cmd, seq.header.stamp.clone()));
            }
            let now = now_secs(&clock);
            rec.write("/control_sequence", now, &seq);
            if let Some(w) = &w {
                rec.write("/command", now, w);
            }
            if let Some(f) = &f {
                rec.write("/command", now, f);
            }
            cycle_ms.push(t_in.elapsed().as_secs_f64() * 1e3);
        };
        loop {
            tokio::select! {
                biased;
                // first: under a flood of states the report still goes out on time (a branch later
                // in a biased select starves while an earlier one is always ready)
                _ = diag_tick.tick() => {
                    let dt = last_diag.elapsed().as_secs_f64().max(1e-9);
                    last_diag = Instant::now();
                    let kv = |k: &str, v: String| KeyValue { key: k.into(), value: v };
                    let status = if let Some(controller) = controller.as_ref() {
                        let s = controller.stats();
                        let a = &s.answers;
                        let solve = &a.solve_ms[a.solve_ms.len().saturating_sub(1000)..];
                        let fallback = s.answers.count(PlanStatus::FallbackShifted);
                        // the live max_state_age_s: no state for twice that (at least 1 s) is an outage
                        let stale_after_s = (2.0 * controller.config().max_state_age_s).max(1.0);
                        let h = lp.health.report(started.elapsed().as_secs_f64(), controller.has_policy(), stale_after_s);
                        let mut status = DiagnosticStatus {
                            level: h.level,
                            name: format!("{diag_name}: receding-horizon controller"),
                            message: h.message.clone(),
                            hardware_id: controller.policy_name(),
                            values: vec![
                                kv("cycles", a.total().to_string()),
                                kv("rate_hz", format!("{:.2}", lp.window_cycles as f64 / dt)),
                                kv("converged", s.answers.count(PlanStatus::Converged).to_string()),
                                kv("anytime", s.answers.count(PlanStatus::Anytime).to_string()),
                                kv("fallback_shifted", fallback.to_string()),
                                kv("failed", s.answers.count(PlanStatus::Failed).to_string()),
                                kv("terminal_phase", s.answers.count(PlanStatus::Terminal).to_string()),
                                kv("landing_time_moves", s.retimed.to_string()),
                                kv("deadline_misses", a.late.to_string()),
                                kv("deadline_ms", format!("{:.1}", controller.config().deadline_s * 1e3)),
                                kv("solve_ms_p50", format!("{:.3}", percentile(solve, 0.5))),
                                kv("solve_ms_p99", format!("{:.3}", percentile(solve, 0.99))),
                                kv("cycle_ms_p50", format!("{:.3}", percentile(&lp.cycle_ms, 0.5))),
                                kv("cycle_ms_p99", format!("{:.3}", percentile(&lp.cycle_ms, 0.99))),
                                kv("window_answers", h.window.answers.to_string()),
                                kv("window_failed", h.window.failed.to_string()),
                                kv("window_fallback_shifted", h.window.fallback.to_string()),
                                kv("window_late", h.window.late.to_string()),
                                kv("failed_streak", h.failed_streak.to_string()),
                                kv("last_failure_reason", h.last_failure.as_ref().map(|f| f.0.clone()).unwrap_or_default()),
                                kv("last_failure", h.last_failure.as_ref().map(|f| f.1.clone()).unwrap_or_default()),
                                kv("state_age_s", h.state_age_s.map(|a| format!("{a:.3}")).unwrap_or_else(|| "none yet".into())),
                            ],
                        };
                        status.values.push(kv("lifecycle_state", lstate.label().into()));
                        if lstate != LifecycleState::Active {
                            // not answering is what an inactive node does: no error for it
                            status.level = DiagnosticStatus::OK as u8;
                            status.message = format!("{}: not answering (lifecycle; activate to answer)", lstate.label());
                        }
                        status
                    } else {
                        DiagnosticStatus {
                            level: DiagnosticStatus::OK as u8,
                            name: format!("{diag_name}: receding-horizon controller"),
                            message: format!("{}: no model loaded (lifecycle; configure loads it)", lstate.label()),
                            hardware_id: String::new(),
                            values: vec![kv("lifecycle_state", lstate.label().into())],
                        }
                    };
                    lp.window_cycles = 0;
                    if lp.cycle_ms.len() > 5000 { lp.cycle_ms.drain(..2500); }
                    let diag = DiagnosticArray { header: Header { stamp: ros::time_from_secs(now_secs(&clock)), frame_id: String::new() }, status: vec![status] };
                    rec.write("/diagnostics", now_secs(&clock), &diag);
                    let _ = diag_pub.publish(&diag);
                }
                Some(c) = async { match clock_sub.as_mut() { Some(sub) => sub.next().await, None => futures::future::pending().await } } => {
                    if let Ok(mut t) = sim_now.lock() { *t = ros::secs_from_time(&c.clock); }
                    rec.write("/clock", ros::secs_from_time(&c.clock), &c);
                }
                Some(g) = goal_sub.next() => {
                    rec.write("/goal", now_secs(&clock), &g);
                    let Some(controller) = controller.as_mut() else {
                        lp.throttle.info("goal-unconfigured", "goal held until configure (the node is unconfigured)");
                        pending_goal = Some(g);
                        continue;
                    };
                    match controller.set_goal_at(&goal_from_msg(&g), Some(now_secs(&clock))) {
                        Ok(()) => {
                            lp.health.set_goal(Some(started.elapsed().as_secs_f64()));
                            lp.throttle.info("goal", &format!("goal: x_target {:?}, t_go {} s (stamp {:.3})", g.x_target, g.t_go, ros::secs_from_time(&g.header.stamp)));
                        }
                        Err(e) => {
                            lp.health.goal_refused(&e);
                            lp.throttle.warn(&format!("goal:{}", e.reason()), &format!("goal refused, the previous goal stays: {e}"));
                        }
                    }
                }
                Some(msg) = state_sub.next() => {
                    rec.write("/state", now_secs(&clock), &msg);
                    let mut latest = msg;
                    while let Some(Some(m)) = state_sub.next().now_or_never() { rec.write("/state", now_secs(&clock), &m); latest = m; }
                    match (lstate, controller.as_mut()) {
                        (LifecycleState::Active, Some(c)) => cycle(c, state_from_msg(&latest), latest.header.stamp.clone(), &mut lp, &mut rec),
                        _ => lp.throttle.info("not-active", &format!("state not answered: trc_node is {} (lifecycle)", lstate.label())),
                    }
                }
                Some(o) = odom_sub.next() => {
                    rec.write("/odom", now_secs(&clock), &o);
                    let mut o = o;
                    while let Some(Some(m)) = odom_sub.next().now_or_never() { rec.write("/odom", now_secs(&clock), &m); o = m; }
                    match descent_state_from_odometry(&o, mass) {
                        Some(s) if cfg.problem.name == ProblemKind::Descent => match (lstate, controller.as_mut()) {
                            (LifecycleState::Active, Some(c)) => cycle(c, s, o.header.stamp.clone(), &mut lp, &mut rec),
                            _ => lp.throttle.info("not-active", &format!("odom not answered: trc_node is {} (lifecycle)", lstate.label())),
                        },
                        Some(_) => lp.throttle.warn("odom-problem", "odom received but the problem is not descent; ignored"),
                        None => lp.throttle.warn("odom-mass", "odom received but no mass yet on `mass` (std_msgs/Float64); ignored"),
                    }
                }
                Some(m) = mass_sub.next() => {
                    rec.write("/mass", now_secs(&clock), &m);
                    if m.data.is_finite() && m.data > 0.0 { mass = Some(m.data); } else { lp.throttle.warn("mass", &format!("mass {} kg refused", m.data)); }
                }
                Some((name, _)) = param_events.next() => {
                    let c = live.lock().map(|c| c.controller.clone());
                    if let (Ok(c), Some(controller)) = (c, controller.as_mut()) {
                        match controller.set_config(c) {
                            Ok(()) => log::info!("controller settings updated ({name})"),
                            Err(e) => log::warn!("controller settings refused: {e}"),
                        }
                    }
                }
                Some(req) = change_state_srv.next() => {
                    let (id, label) = (req.message.transition.id, req.message.transition.label.clone());
                    let ok = match lstate.resolve(id, &label) {
                        Err(e) => {
                            log::warn!("lifecycle: {e}");
                            false
                        }
                        Ok(t) => {
                            let start = lstate;
                            let done = transition(t, &mut controller, &live, package_root.as_deref(), &mut pending_goal, &clock);
                            lstate = t.outcome(done.is_ok());
                            match &done {
                                Ok(()) => log::info!("lifecycle: {} -> {} ({})", start.label(), lstate.label(), t.label()),
                                Err(reason) => log::error!("lifecycle: {} failed, back to {}: {reason}", t.label(), lstate.label()),
                            }
                            let stamp_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
                            let _ = transition_pub.publish(&LcTransitionEvent {
                                timestamp: stamp_ns,
                                transition: LcTransition { id: t.id(), label: t.label().into() },
                                start_state: lc_state(start),
                                goal_state: lc_state(lstate),
                            });
                            done.is_ok()
                        }
                    };
                    let _ = req.respond(LcChangeState::Response { success: ok });
                    if lstate == LifecycleState::Finalized {
                        break;
                    }
                }
                Some(req) = get_state_srv.next() => {
                    let _ = req.respond(LcGetState::Response { current_state: lc_state(lstate) });
                }
                Some(req) = get_states_srv.next() => {
                    let _ = req.respond(LcGetAvailableStates::Response { available_states: LifecycleState::ALL.iter().map(|s| lc_state(*s)).collect() });
                }
                Some(req) = get_transitions_srv.next() => {
                    let available_transitions = lstate
                        .available()
                        .into_iter()
                        .map(|t| LcTransitionDescription { transition: LcTransition { id: t.id(), label: t.label().into() }, start_state: lc_state(t.start()), goal_state: lc_state(t.goal()) })
                        .collect();
                    let _ = req.respond(LcGetAvailableTransitions::Response { available_transitions });
                }
                _ = int.recv() => break,
                _ = term.recv() => break,
            }
        }
        Ok(())
    });
    running.store(false, Ordering::Relaxed);
    let _ = spinner.join();
    rec.close();
    if let Some(controller) = &controller {
        let s = controller.stats();
        let counts: Vec<String> = PlanStatus::ALL.iter().map(|st| format!("{} {}", s.answers.count(*st), st.name())).collect();
        log::info!("trc_node: {} cycles: {}; {} late, {} landing-time moves", s.answers.total(), counts.join(", "), s.answers.late, s.retimed);
    }
    drop(controller); // ends the inference thread before libtorch's static teardown
    result
}
