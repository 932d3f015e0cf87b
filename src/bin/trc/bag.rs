//! `trc record`, `trc play` (ROS 2, r2r: raw CDR in and out) and `trc replay` (ROS-free): the
//! rosbag2 MCAP tools (`docs/rosbags.md`).

use std::path::{Path, PathBuf};

use trc_control::bag::replay::{replay, DeadlineMode, ReplayOptions, ReplayReport, Verdict};
use trc_control::bag::Bag;
use trc_control::config::TrcConfig;
use trc_control::control::RecedingHorizon;
use trc_control::plot::{write_png, Panel, Series};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// What `trc replay` was asked.
pub struct ReplayArgs {
    pub bag: PathBuf,
    pub config: Option<PathBuf>,
    pub model: Option<String>,
    pub deadline: DeadlineMode,
    pub tol_u: f64,
    pub rows: usize,
    pub plot: Option<PathBuf>,
    pub out: Option<PathBuf>,
}

/// Replays a bag through the controller core; `Ok(false)` when a cycle differs beyond the
/// tolerance (exit status 1).
pub fn replay_cmd(a: &ReplayArgs) -> AnyResult<bool> {
    let root = super::launcher::package_root();
    let path = a.config.clone().unwrap_or_else(|| root.join("config/descent.yaml"));
    let mut cfg = TrcConfig::from_file(&path)?;
    if let Some(m) = &a.model {
        cfg.node.model = m.clone();
    }
    if let Some(s) = trc_control::closed_loop::scenario_of(&cfg, Some(&root))? {
        s.apply(&mut cfg)?;
    }
    // every inference finishes: the deadline outcome is ignored or imposed, never measured
    cfg.controller.deadline_s = 10.0;
    let bag = Bag::open(&a.bag)?;
    log::info!("{}: {} messages on {} topics", bag.path.display(), bag.messages.len(), bag.topics.len());
    let mut controller = RecedingHorizon::from_config(&cfg, Some(&root))?;
    let opts = ReplayOptions { deadline: a.deadline, tol_u: a.tol_u, ..Default::default() };
    let report = replay(&bag, &mut controller, &opts)?;
    for t in &report.ignored_topics {
        log::warn!("topic {t} is not read by the replay; skipped");
    }
    for u in &report.undecodable {
        log::warn!("undecodable message skipped: {u}");
    }
    for (stamp, r) in &report.goals {
        if let Some(r) = r {
            log::warn!("goal stamped {stamp:.3} s refused: {r}");
        }
    }
    let text = format!(
        "# Replay of {}\n\nconfig {}, model {}, deadline {:?}, tolerance |u - u_rec| <= {:e}\n\n{}\n\n{}",
        bag.path.display(),
        path.display(),
        cfg.node.model,
        a.deadline,
        a.tol_u,
        report.summary(),
        report.table(a.rows)
    );
    println!("{text}");
    if let Some(out) = &a.out {
        std::fs::write(out, &text)?;
    }
    if let Some(p) = &a.plot {
        plot(&report, p)?;
        log::info!("plot: {}", p.display());
    }
    let ok = report.passed();
    if !ok {
        log::error!("replay differs from the recording: {}", report.summary());
    }
    Ok(ok)
}

fn plot(r: &ReplayReport, path: &Path) -> AnyResult<()> {
    let t0 = r.cycles.first().map_or(0.0, |c| c.stamp);
    let pts = |f: &dyn Fn(&trc_control::bag::replay::CycleReport) -> Option<f64>| -> Vec<(f64, f64)> {
        r.cycles.iter().filter_map(|c| f(c).filter(|v| v.is_finite()).map(|v| (c.stamp - t0, v))).collect()
    };
    let du = Panel::new(
        "replayed vs recorded plan",
        "time since the first state [s]",
        "max |u - u_rec| (+1e-12) [N]",
        vec![
            Series::dots("compared", pts(&|c| c.max_du.filter(|_| c.verdict != Verdict::Timing).map(|d| d + 1e-12))),
            Series::dots("timing-dependent", pts(&|c| c.max_du.filter(|_| c.verdict == Verdict::Timing).map(|d| d + 1e-12))),
        ],
    )
    .log_y();
    let err = Panel::new(
        "predicted terminal error",
        "time since the first state [s]",
        "terminal error [tolerance units]",
        vec![Series::line("recorded", pts(&|c| c.recorded_terminal_error)), Series::line("replayed", pts(&|c| c.terminal_error))],
    );
    write_png(path, &[du, err], (640, 400), 2)?;
    Ok(())
}

#[cfg(feature = "ros")]
pub use ros_side::{play, record, PlayArgs, RecordArgs};

#[cfg(feature = "ros")]
mod ros_side {
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use futures::{FutureExt, Stream, StreamExt};
    use r2r::QosProfile;
    use trc_control::bag::msgs::{self, types, ClockMsg, Time};
    use trc_control::bag::schema::MsgPath;
    use trc_control::bag::{Bag, BagWriter, Qos, Reliability};

    use super::AnyResult;

    /// The topics `trc record` takes without `--topics`: the controller's (descent types) and
    /// trc_sim's `landing`.
    fn default_topics() -> Vec<(&'static str, &'static str)> {
        let mut t = msgs::controller_topics(true).to_vec();
        t.push(("/landing", types::STRING));
        t
    }

    /// What `trc record` was asked.
    pub struct RecordArgs {
        pub out: PathBuf,
        pub topics: Vec<String>,
        pub duration_s: Option<f64>,
        pub use_sim_time: bool,
    }

    fn absolute(t: &str) -> String {
        if t.starts_with('/') {
            t.to_string()
        } else {
            format!("/{t}")
        }
    }

    /// The subscription QoS for a topic whose publishers offer `q`: reliable where they are
    /// reliable (no drops, as rosbag2 does), best effort otherwise; transient local where the
    /// history of a latched topic is wanted.
    fn sub_qos(q: Qos) -> QosProfile {
        let p = QosProfile::default().keep_last(q.depth.max(100) as usize);
        let p = if q.reliability == Reliability::Reliable { p.reliable() } else { p.best_effort() };
        if q.transient_local {
            p.transient_local()
        } else {
            p.volatile()
        }
    }

    fn pub_qos(q: Qos) -> QosProfile {
        let p = QosProfile::default().keep_last(q.depth.max(1) as usize);
        let p = if q.reliability == Reliability::BestEffort { p.best_effort() } else { p.reliable() };
        if q.transient_local {
            p.transient_local()
        } else {
            p.volatile()
        }
    }

    type Raw = std::pin::Pin<Box<dyn Stream<Item = Vec<u8>> + Unpin>>;

    /// Records topics as raw CDR into a rosbag2 MCAP folder until Ctrl-C, SIGTERM or
    /// `duration_s`; topics not of `default_topics` are subscribed when they appear in the
    /// graph (their type read from it).
    pub fn record(a: &RecordArgs) -> AnyResult<()> {
        let ctx = r2r::Context::create()?;
        let mut node = r2r::Node::create(ctx, "trc_record", "")?;
        let clock = node.get_ros_clock();
        let defaults = default_topics();
        let known: HashMap<&str, &str> = defaults.iter().copied().collect();
        let wanted: Vec<String> =
            if a.topics.is_empty() { defaults.iter().map(|(t, _)| t.to_string()).collect() } else { a.topics.iter().map(|t| absolute(t)).collect() };
        let mut writer = BagWriter::create(&a.out, MsgPath::from_env(Some(&super::super::launcher::package_root())))?;
        // a topic that cannot be set up leaves no half-made folder behind (a rerun would find it)
        let cleanup = |e: Box<dyn std::error::Error>| -> Box<dyn std::error::Error> {
            let _ = std::fs::remove_dir_all(&a.out);
            e
        };
        let mut subs: BTreeMap<String, Raw> = BTreeMap::new();
        let mut pending: Vec<String> = Vec::new();
        let subscribe = |node: &mut r2r::Node, writer: &mut BagWriter, topic: &str, ty: &str| -> AnyResult<Raw> {
            let q = Qos::of_topic(topic);
            writer.add_topic(topic, ty, q)?;
            Ok(Box::pin(node.subscribe_raw(topic, ty, sub_qos(q))?))
        };
        for t in &wanted {
            match known.get(t.as_str()) {
                Some(ty) => {
                    let s = subscribe(&mut node, &mut writer, t, ty).map_err(cleanup)?;
                    subs.insert(t.clone(), s);
                }
                None => pending.push(t.clone()),
            }
        }
        let mut sim_now: Option<Time> = None;
        // under --use-sim-time, what arrives before the first /clock gets that clock's time
        let mut held: Vec<(String, Vec<u8>)> = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let started = Instant::now();
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} recording {msg}").expect("template"));
        let mut last_graph = Instant::now() - Duration::from_secs(10);
        let mut total = 0u64;
        let result: AnyResult<()> = rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            loop {
                tokio::select! {
                    _ = int.recv() => break,
                    _ = term.recv() => break,
                    _ = tick.tick() => {}
                }
                node.spin_once(Duration::from_millis(0));
                for (topic, s) in subs.iter_mut() {
                    while let Some(Some(data)) = s.next().now_or_never() {
                        if topic == "/clock" {
                            if let Ok(c) = msgs::from_cdr::<ClockMsg>(types::CLOCK, &data) {
                                sim_now = Some(c.clock);
                            }
                        }
                        let now_ns = match (a.use_sim_time, sim_now) {
                            (true, Some(t)) => t.nanos(),
                            (true, None) => {
                                // bounded: a graph without any /clock publisher must not grow it forever
                                if held.len() < 10_000 {
                                    held.push((topic.clone(), data));
                                }
                                continue;
                            }
                            (false, _) => clock.lock().ok().and_then(|mut c| c.get_now().ok()).map_or(0, |d| d.as_nanos() as u64),
                        };
                        for (t, d) in held.drain(..) {
                            writer.write(&t, now_ns, &d)?;
                            total += 1;
                        }
                        writer.write(topic, now_ns, &data)?;
                        total += 1;
                    }
                }
                if !pending.is_empty() && last_graph.elapsed() > Duration::from_secs(1) {
                    last_graph = Instant::now();
                    let graph = node.get_topic_names_and_types()?;
                    let mut still = Vec::new();
                    for t in pending.drain(..) {
                        match graph.get(&t).and_then(|v| v.first()) {
                            Some(ty) => {
                                log::info!("subscribing to {t} ({ty})");
                                match subscribe(&mut node, &mut writer, &t, ty) {
                                    Ok(s) => {
                                        subs.insert(t, s);
                                    }
                                    Err(e) => log::warn!("cannot record {t}: {e}"),
                                }
                            }
                            None => still.push(t),
                        }
                    }
                    pending = still;
                }
                bar.set_message(format!("{total} messages to {}", a.out.display()));
                bar.tick();
                if a.duration_s.is_some_and(|d| started.elapsed().as_secs_f64() >= d) {
                    break;
                }
            }
            Ok(())
        });
        bar.finish_and_clear();
        if !held.is_empty() {
            log::warn!("{} messages arrived before any /clock and were not written (--use-sim-time)", held.len());
        }
        let counts = writer.counts();
        let dir = writer.finish()?;
        for (t, n) in &counts {
            log::info!("{t}: {n} messages");
        }
        for t in &pending {
            log::warn!("{t}: never appeared in the graph; not recorded");
        }
        log::info!("bag closed: {} ({} messages)", dir.display(), counts.iter().map(|(_, n)| n).sum::<u64>());
        result
    }

    /// What `trc play` was asked.
    pub struct PlayArgs {
        pub bag: PathBuf,
        pub rate: f64,
        pub clock: bool,
        pub topics: Vec<String>,
        pub remap: Vec<String>,
        pub repeat: bool,
        pub delay_s: f64,
        pub latched_first: bool,
    }

    /// Publishes a bag's messages with their recorded timing (scaled by `rate`), like
    /// `ros2 bag play`: `--clock` publishes `/clock` from the log times (the bag's own `/clock`
    /// is then not played), `--topics` selects, `--remap from:=to` renames, `--loop` repeats.
    pub fn play(a: &PlayArgs) -> AnyResult<()> {
        if !(a.rate.is_finite() && a.rate > 0.0) {
            return Err(format!("--rate {} must be a positive number", a.rate).into());
        }
        if !(a.delay_s.is_finite() && (0.0..=3600.0).contains(&a.delay_s)) {
            return Err(format!("--delay {} must be between 0 and 3600 s", a.delay_s).into());
        }
        let mut bag = Bag::open(&a.bag)?;
        // played in log-time order, as rosbag2 plays (the file order may differ)
        bag.messages.sort_by_key(|m| m.log_time_ns);
        let mut remap: HashMap<String, String> = HashMap::new();
        for r in &a.remap {
            let (f, t) = r.split_once(":=").ok_or_else(|| format!("--remap {r}: use from:=to"))?;
            remap.insert(absolute(f), absolute(t));
        }
        let selected = |t: &str| (a.topics.is_empty() || a.topics.iter().any(|s| absolute(s) == absolute(t))) && !(a.clock && absolute(t) == "/clock");
        let ctx = r2r::Context::create()?;
        let mut node = r2r::Node::create(ctx, "trc_play", "")?;
        let mut pubs: HashMap<String, r2r::PublisherUntyped> = HashMap::new();
        let mut latched: Vec<String> = Vec::new();
        for (t, info) in &bag.topics {
            if !selected(t) {
                continue;
            }
            if info.encoding != "cdr" {
                log::warn!("{t}: encoding {} is not cdr; skipped", info.encoding);
                continue;
            }
            let q = Qos::from_yaml(&info.qos_yaml).unwrap_or_else(|| Qos::of_topic(t));
            let name = remap.get(&absolute(t)).cloned().unwrap_or_else(|| absolute(t));
            match node.create_publisher_untyped(&name, &info.type_name, pub_qos(q)) {
                Ok(p) => {
                    log::info!("playing {t} ({}) as {name}: {} messages", info.type_name, info.count);
                    pubs.insert(t.clone(), p);
                    if q.transient_local {
                        latched.push(t.clone());
                    }
                }
                Err(e) => log::warn!("{t}: cannot publish type {} ({e}); skipped (is its package sourced?)", info.type_name),
            }
        }
        let clock_pub =
            if a.clock { Some(node.create_publisher::<r2r::rosgraph_msgs::msg::Clock>("/clock", QosProfile::default().keep_last(1))?) } else { None };
        let Some((first, last)) = bag.span_ns() else {
            log::warn!("{}: no messages", bag.path.display());
            return Ok(());
        };
        // discovery before the first message (a late-joining subscriber misses volatile messages)
        std::thread::sleep(Duration::from_secs_f64(a.delay_s));
        if a.latched_first {
            // DDS does not order messages across topics: a goal published just before a state
            // can arrive after it. The first message of each latched topic goes out first.
            if let Some(c) = &clock_pub {
                let stamp = r2r::builtin_interfaces::msg::Time { sec: (first / 1_000_000_000) as i32, nanosec: (first % 1_000_000_000) as u32 };
                let _ = c.publish(&r2r::rosgraph_msgs::msg::Clock { clock: stamp });
            }
            for t in &latched {
                if let (Some(m), Some(p)) = (bag.messages.iter().find(|m| &m.topic == t), pubs.get(t)) {
                    log::info!("{t}: its first message published ahead (--latched-first)");
                    let _ = p.publish_raw(&m.data);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let bar = indicatif::ProgressBar::new(bag.messages.len() as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} messages, bag time {msg}").expect("template"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let stop = stop.clone();
            let _ = ctrlc_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed));
        }
        let mut published = 0u64;
        'outer: loop {
            let start = Instant::now();
            bar.set_position(0);
            for m in &bag.messages {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break 'outer;
                }
                let at = Duration::from_secs_f64((m.log_time_ns - first) as f64 * 1e-9 / a.rate);
                if let Some(wait) = at.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                if let Some(c) = &clock_pub {
                    let t = m.log_time_ns;
                    let stamp = r2r::builtin_interfaces::msg::Time { sec: (t / 1_000_000_000) as i32, nanosec: (t % 1_000_000_000) as u32 };
                    let _ = c.publish(&r2r::rosgraph_msgs::msg::Clock { clock: stamp });
                }
                if let Some(p) = pubs.get(&m.topic) {
                    if let Err(e) = p.publish_raw(&m.data) {
                        log::warn!("{}: publish failed: {e}", m.topic);
                    }
                    published += 1;
                }
                bar.inc(1);
                bar.set_message(format!("{:.2} s of {:.2} s", (m.log_time_ns - first) as f64 * 1e-9, (last - first) as f64 * 1e-9));
                node.spin_once(Duration::from_millis(0));
            }
            if !a.repeat {
                break;
            }
            // a bag whose messages share one time must not spin
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
        // let reliable subscribers take the last messages
        std::thread::sleep(Duration::from_millis(300));
        log::info!("played {published} messages from {}", bag.path.display());
        Ok(())
    }

    /// SIGINT/SIGTERM run `f` (a thread waiting on the signals on its own runtime).
    fn ctrlc_handler<F: Fn() + Send + 'static>(f: F) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            rt.block_on(async move {
                let (Ok(mut term), Ok(mut int)) = (
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => f(),
                    _ = int.recv() => f(),
                }
            })
        });
        Ok(())
    }
}

/// Writes the fault bag (`tests/data/faults`): the first `cycles` states of a recorded landing
/// (`from`) with its goal and clock, and five faults injected between them, each a
/// `trc_control/State` or `Goal` the controller must refuse or absorb (`docs/rosbags.md`):
/// 1. a state with a NaN altitude (cycle 10);
/// 2. a stale state, stamped 5 s before the clock (cycle 20);
/// 3. a goal change mid-flight: the landing site moved 30 m (cycle 30);
/// 4. a time jump backwards: clock and stamps 10 s earlier for two cycles, then back (cycle 40);
/// 5. a state with the wrong length (cycle 45).
///
/// The recorded answers are not copied (the faults were never answered by a node): a replay of
/// this bag answers every state.
pub fn make_fault_bag(from: &Path, out: &Path, cycles: usize) -> AnyResult<()> {
    use trc_control::bag::msgs::{from_cdr, types, ClockMsg, GoalMsg, StateMsg, Time};
    use trc_control::bag::{schema::MsgPath, BagWriter, Qos};
    let bag = Bag::open(from)?;
    let goal_msg = bag.on("goal").next().ok_or("the source bag has no goal")?;
    let goal: GoalMsg = from_cdr(types::GOAL, &goal_msg.data)?;
    let states: Vec<(u64, StateMsg)> = bag
        .on("state")
        .map(|m| Ok::<_, Box<dyn std::error::Error>>((m.log_time_ns, from_cdr::<StateMsg>(types::STATE, &m.data)?)))
        .collect::<Result<_, _>>()?;
    if states.len() < cycles || cycles < 50 {
        return Err(format!("the source bag has {} states; the fault bag needs cycles >= 50 of them", states.len()).into());
    }
    let mut w = BagWriter::create(out, MsgPath::from_env(Some(&super::launcher::package_root())))?;
    for (t, ty) in [("/goal", types::GOAL), ("/state", types::STATE), ("/clock", types::CLOCK)] {
        w.add_topic(t, ty, Qos::of_topic(t))?;
    }
    let ns = |t: f64| (t * 1e9).round().max(0.0) as u64;
    let first_stamp = states[0].1.header.stamp.secs();
    let mut g = goal.clone();
    g.header.stamp = Time::from_secs(first_stamp);
    w.write_msg("/goal", ns(first_stamp), &g)?;
    for (i, (_, s)) in states.iter().take(cycles).enumerate() {
        let t = s.header.stamp.secs();
        let clock = |w: &mut BagWriter, t: f64| w.write_msg("/clock", ns(t), &ClockMsg { clock: Time::from_secs(t) });
        let jump = if (40..42).contains(&i) { -10.0 } else { 0.0 };
        clock(&mut w, t + jump)?;
        let mut s = s.clone();
        s.header.stamp = Time::from_secs(t + jump);
        w.write_msg("/state", ns(t + jump), &s)?;
        let t_fault = t + 0.01;
        match i {
            10 => {
                let mut bad = s.clone();
                bad.x[2] = f64::NAN;
                bad.header.stamp = Time::from_secs(t_fault);
                clock(&mut w, t_fault)?;
                w.write_msg("/state", ns(t_fault), &bad)?;
            }
            20 => {
                let mut stale = s.clone();
                stale.header.stamp = Time::from_secs(t - 5.0);
                clock(&mut w, t_fault)?;
                w.write_msg("/state", ns(t_fault), &stale)?;
            }
            30 => {
                let mut g2 = goal.clone();
                g2.x_target[0] += 30.0;
                g2.header.stamp = Time::from_secs(t_fault);
                clock(&mut w, t_fault)?;
                w.write_msg("/goal", ns(t_fault), &g2)?;
            }
            45 => {
                let mut short = s.clone();
                short.x.truncate(6);
                short.header.stamp = Time::from_secs(t_fault);
                clock(&mut w, t_fault)?;
                w.write_msg("/state", ns(t_fault), &short)?;
            }
            _ => {}
        }
    }
    let dir = w.finish()?;
    log::info!("fault bag: {}", dir.display());
    Ok(())
}
