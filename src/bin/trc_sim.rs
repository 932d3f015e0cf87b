//! `trc_sim`: the plant simulator node (r2r) over [`trc_control::plant::SimPlant`]: true dynamics
//! by RK4 at `sim.internal_hz`, zero-order hold on the latest `command`, disturbances, seeded
//! episodes, touchdown detection; the test harness of `make demo` and the integration test.
//!
//! ```text
//! trc_sim --ros-args --params-file config/descent.yaml [-p sim.episodes:=5] [-p use_sim_time:=true -p sim.time_scale:=4.0]
//! ```
//!
//! Per episode: the initial state is the test-split sample `first_episode + i` of `sim.seed`
//! (infeasible ones skipped), solved once by the classical solver for the reference optimum
//! (descent: LCvx minimum-fuel t_f and fuel). The sim publishes the goal (transient local,
//! descent `t_go` = the optimum's t_f), waits for the controller's first answer (the vehicle
//! frozen), then restarts the goal's clock and flies, publishing `state` at `sim.rate_hz`.
//! A command takes effect when it arrives (sim time), plus `sim.latency_s`.
//!
//! Out: `state`, `goal`, `/clock` (when `use_sim_time`), `landing` (`std_msgs/String`, one YAML
//! document per episode), and with `sim.results_file` the same YAML appended to that file.
//! End-to-end latency is measured here: state publication -> the `control_sequence` that
//! answers it (matched by stamp), wall time.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use nalgebra::DVector;
use r2r::geometry_msgs::msg::WrenchStamped;
use r2r::std_msgs::msg::{Float64, Header};
use r2r::trc_control::msg::{ControlSequence, Goal, State};
use r2r::QosProfile;
use trc_control::closed_loop::{episode_goal, episode_sim, episodes_for, EpisodeLog, T0};
use trc_control::config::ProblemKind;
use trc_control::plan::PlanStatus;
use trc_control::plant::{Plant, SimPlant};
use trc_control::ros::params::{node_startup_config, ParamStore};
use trc_control::ros::{self, secs_from_time, state_to_msg, time_from_secs, wrench_to_thrust};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    ros::logging::init("trc_sim");
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            log::error!("trc_sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn wall_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

enum CommandSub {
    Thrust(std::pin::Pin<Box<dyn futures::Stream<Item = WrenchStamped> + Send>>),
    Scalar(std::pin::Pin<Box<dyn futures::Stream<Item = Float64> + Send>>),
}

impl CommandSub {
    /// The newest command received, if any.
    fn latest(&mut self) -> Option<DVector<f64>> {
        let mut out = None;
        match self {
            CommandSub::Thrust(s) => {
                while let Some(Some(w)) = s.next().now_or_never() {
                    out = Some(wrench_to_thrust(&w));
                }
            }
            CommandSub::Scalar(s) => {
                while let Some(Some(f)) = s.next().now_or_never() {
                    out = Some(DVector::from_vec(vec![f.data]));
                }
            }
        }
        out
    }
}

fn run() -> AnyResult<bool> {
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, "trc_sim", "")?;
    if let Err(e) = ros::logging::attach_rosout(&mut node) {
        log::warn!("no /rosout publisher ({e}); logs go to the console only");
    }
    let mut cfg = node_startup_config(&node)?;
    // the package root: the params file's folder's parent (config/descent.yaml -> .)
    let package_root = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--params-file")
        .and_then(|w| std::path::Path::new(&w[1]).canonicalize().ok())
        .and_then(|p| p.parent().and_then(|d| d.parent()).map(|d| d.to_path_buf()));
    // sampled states, or the scenario of sim.scenario (its vehicle applied to the problem)
    let count = cfg.sim.episodes as usize;
    let specs = episodes_for(&mut cfg, count, None, package_root.as_deref())?;
    let live = std::sync::Arc::new(std::sync::Mutex::new(cfg.clone()));
    let (param_future, _events) = node.make_derived_parameter_handler(std::sync::Arc::new(std::sync::Mutex::new(ParamStore { cfg: live })))?;
    let sim = cfg.sim.clone();
    let problem = cfg.problem.clone();
    let sim_time = cfg.use_sim_time;
    if !sim_time && sim.time_scale != 1.0 {
        return Err("sim.time_scale != 1 needs use_sim_time:=true (for trc_sim and trc_node)".into());
    }
    let state_pub = node.create_publisher::<State>("state", QosProfile::default().best_effort().keep_last(1))?;
    let goal_pub = node.create_publisher::<Goal>("goal", QosProfile::default().keep_last(1).transient_local())?;
    let landing_pub = node.create_publisher::<r2r::std_msgs::msg::String>("landing", QosProfile::default().keep_last(10).transient_local())?;
    let clock_pub = if sim_time { Some(node.create_publisher::<r2r::rosgraph_msgs::msg::Clock>("/clock", QosProfile::default().keep_last(1))?) } else { None };
    let mut commands = match problem.name {
        ProblemKind::Descent => CommandSub::Thrust(Box::pin(node.subscribe::<WrenchStamped>("command", QosProfile::default().keep_last(10))?)),
        _ => CommandSub::Scalar(Box::pin(node.subscribe::<Float64>("command", QosProfile::default().keep_last(10))?)),
    };
    let mut seq_sub = node.subscribe::<ControlSequence>("control_sequence", QosProfile::default().keep_last(10))?;
    let mut param_future = Box::pin(param_future);

    log::info!(
        "{} episodes of {} (seed {}, test split from index {}), state at {} Hz, time scale {}",
        specs.len(),
        problem.name,
        sim.seed,
        sim.first_episode,
        sim.rate_hz,
        sim.time_scale
    );
    let period = 1.0 / sim.rate_hz;
    let wall_period = Duration::from_secs_f64(period / sim.time_scale);
    let deadline_ms = cfg.controller.deadline_s * 1e3;
    // sim-time base: continuous across episodes
    let mut t_base = T0;
    let mut all_ok = true;
    let mut spin = |node: &mut r2r::Node| {
        node.spin_once(Duration::from_millis(0));
        let _ = (&mut param_future).now_or_never();
    };
    let stamp_now = |t_sim: f64| if sim_time { t_sim } else { wall_now() };
    let publish_clock = |t: f64| {
        if let Some(p) = &clock_pub {
            let _ = p.publish(&r2r::rosgraph_msgs::msg::Clock { clock: time_from_secs(t) });
        }
    };
    for spec in &specs {
        let x0 = DVector::from_column_slice(&spec.x0);
        let mut plant = SimPlant::new(&problem, &episode_sim(&problem, &sim, spec), x0, DVector::from_column_slice(&spec.x_target), spec.index)?;
        let goal_msg = |stamp: f64| {
            let g = episode_goal(&problem, spec, stamp);
            Goal { header: Header { stamp: time_from_secs(stamp), frame_id: "landing_site".into() }, x_target: g.x_target, t_go: g.t_go }
        };
        // handshake: frozen vehicle until the controller answers
        let wait_start = Instant::now();
        // the controller and any recorder matched first, so a bag holds the whole flight
        while state_pub.get_inter_process_subscription_count().unwrap_or(0) < sim.wait_for_subscribers as usize
            && wait_start.elapsed().as_secs_f64() < sim.wait_for_controller_s
        {
            spin(&mut node);
            std::thread::sleep(Duration::from_millis(10));
        }
        // the clock first: a node that checks a goal's stamp against its clock must not see the
        // next episode's goal (1 s after the last tick) ahead of a clock still at the last tick
        publish_clock(t_base);
        spin(&mut node);
        std::thread::sleep(Duration::from_millis(20));
        // under sim time the goal is stamped at the flight's start, one step after the handshake
        // state: answered in the first round, the flight starts on it without a second goal
        // (a second goal next to the first flight state races it across topics in a bag played back)
        let handshake_goal = if sim_time { t_base + 0.1 } else { stamp_now(t_base) };
        goal_pub.publish(&goal_msg(handshake_goal))?;
        // the goal ahead of the first state (DDS does not order messages across topics)
        let t_goal = Instant::now();
        while t_goal.elapsed() < Duration::from_millis(50) {
            spin(&mut node);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut answered = false;
        while wait_start.elapsed().as_secs_f64() < sim.wait_for_controller_s {
            publish_clock(t_base);
            // noise-free while frozen: the seeded noise stream must not depend on the wait
            let x = plant.true_state().clone();
            state_pub.publish(&state_to_msg(stamp_now(t_base), "landing_site", x.as_slice()))?;
            let t_end = Instant::now() + Duration::from_millis(100);
            while Instant::now() < t_end {
                spin(&mut node);
                while let Some(Some(_)) = seq_sub.next().now_or_never() {
                    answered = true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if answered {
                break;
            }
            if sim_time {
                t_base += 0.1;
            }
        }
        if !answered {
            return Err(
                format!("no control_sequence from the controller within {} s: is trc_node running on this ROS_DOMAIN_ID?", sim.wait_for_controller_s).into()
            );
        }
        let _ = commands.latest();
        // start: fresh goal clock, one step after the answered handshake state (the flight's
        // first state must not share its stamp: a node that drains its queue keeps one of two
        // states with one stamp, and a bag of the flight would then not replay over DDS)
        if sim_time {
            // the clock moves first, so that a recorder logs the goal after the answered state
            // (a bag played back then delivers them in that order)
            t_base += 0.1;
            publish_clock(t_base);
            spin(&mut node);
            std::thread::sleep(Duration::from_millis(20));
        }
        let t_start = stamp_now(t_base);
        if !(sim_time && (t_start - handshake_goal).abs() < 1e-9) {
            goal_pub.publish(&goal_msg(t_start))?;
        }
        spin(&mut node);
        std::thread::sleep(Duration::from_millis(20));
        spin(&mut node);
        while let Some(Some(_)) = seq_sub.next().now_or_never() {}
        let _ = commands.latest();
        let mut sent: HashMap<i64, (Instant, f64)> = HashMap::new();
        let mut episode = EpisodeLog::default();
        episode.state(plant.time(), plant.true_state());
        let wall0 = Instant::now();
        let mut tick = 0u64;
        let result = loop {
            let t_sim = t_start + plant.time();
            publish_clock(t_sim);
            let stamp = stamp_now(t_sim);
            let tick_start = Instant::now();
            // a simulated controller outage (sim.outage_s): no state goes out, the command holds
            if plant.link_up() {
                let x = plant.measured_state();
                state_pub.publish(&state_to_msg(stamp, "landing_site", x.as_slice()))?;
                sent.insert((stamp * 1e6).round() as i64, (tick_start, plant.time()));
            }
            tick += 1;
            let tick_end = wall0 + wall_period * tick as u32;
            let mut advanced = 0.0;
            let mut ended = false;
            while Instant::now() < tick_end {
                spin(&mut node);
                while let Some(Some(m)) = seq_sub.next().now_or_never() {
                    let key = (secs_from_time(&m.header.stamp) * 1e6).round() as i64;
                    if let Some((t, t_plant)) = sent.remove(&key) {
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        // the sequence the vehicle flies open loop during an outage
                        let cols = m.control_dim as usize;
                        if cols > 0 && m.u.len() % cols == 0 && !m.u.is_empty() {
                            plant.sequence(t_plant, m.dt, &nalgebra::DMatrix::from_row_slice(m.u.len() / cols, cols, &m.u));
                        }
                        episode.e2e(ms);
                        match PlanStatus::from_u8(m.status) {
                            Some(status) => episode.answer(status, m.solve_time_ms, ms > deadline_ms),
                            None => log::warn!("control_sequence with unknown status {}; not counted", m.status),
                        }
                    }
                }
                if let Some(u) = commands.latest() {
                    // the command takes effect now (sim time)
                    let now_sim = (tick_start.elapsed().as_secs_f64() * sim.time_scale).min(period);
                    if now_sim > advanced && !ended {
                        ended = plant.advance(now_sim - advanced).is_some();
                        advanced = now_sim;
                    }
                    if !plant.command(&u) {
                        log::warn!("command with a wrong length or a NaN ignored; holding the previous one");
                    }
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            if !ended && period > advanced {
                ended = plant.advance(period - advanced).is_some();
            }
            episode.state(plant.time(), plant.true_state());
            sent.retain(|_, (t, _)| t.elapsed() < Duration::from_secs(5));
            if let (true, Some(r)) = (ended, plant.result()) {
                break r.clone();
            }
        };
        t_base = t_start + plant.time() + 1.0;
        let rec = episode.finish(spec, result.clone(), deadline_ms);
        all_ok &= result.success;
        log::info!(
            "episode {}: {} | touchdown error {:.2} m, speed {:.2} m/s, fuel {:.1} kg vs optimum {:.1} kg ({:+.2}%), solve p50/p99 {:.2}/{:.2} ms, e2e p50/p99 {:.2}/{:.2} ms, anytime {}, fallback {}, terminal {}, late {}",
            spec.index,
            if result.success { "LANDED" } else { "MISSED" },
            result.position_error,
            result.speed,
            result.fuel_kg,
            spec.fuel_opt_kg,
            rec.fuel_gap * 100.0,
            rec.solve_ms_p50,
            rec.solve_ms_p99,
            rec.e2e_ms_p50,
            rec.e2e_ms_p99,
            rec.anytime,
            rec.fallback_shifted,
            rec.terminal,
            rec.late
        );
        let yaml = serde_yaml::to_string(&rec)?;
        let _ = landing_pub.publish(&r2r::std_msgs::msg::String { data: yaml.clone() });
        if !sim.results_file.is_empty() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&sim.results_file)?;
            writeln!(f, "---\n{yaml}")?;
        }
    }
    // let the last landing message go out
    for _ in 0..20 {
        spin(&mut node);
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(all_ok)
}
