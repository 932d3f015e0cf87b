//! `trc bench mujoco`: the controller against a plant nobody here wrote for guidance: trc_node
//! over DDS, fed by `mujoco/lander_plant.py` (a 6-DoF MuJoCo rigid body with engine lag and an
//! attitude loop, speaking the Gazebo bridge's `odom` + `mass` / `command` interface; docs/mujoco.md)
//! through the node's Odometry/Wrench adapters. The same episodes are flown in lockstep against
//! trc_sim's 3-DoF plant for the row beside it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use trc_control::closed_loop::{episode_specs, fly, percentile, EpisodeSpec};
use trc_control::config::TrcConfig;
use trc_control::control::RecedingHorizon;

use crate::launcher::{interrupt, package_root};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The controller settings for a vehicle with attitude dynamics, loaded after the descent config.
pub const VEHICLE_OVERRIDES: &str = "config/lander_6dof.yaml";

/// One episode as `mujoco/lander_plant.py` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct MujocoEpisode {
    /// Episode index (test-split sample of the seed).
    pub index: u64,
    /// `touchdown`, `timeout` or `diverged`.
    pub end: String,
    /// Landed within the tolerances, upright (tilt <= 10 deg) and inside the glide-slope cone.
    pub success: bool,
    /// Horizontal distance of the base from the site at touchdown [m].
    pub touchdown_error_m: f64,
    /// Speed of the base at touchdown [m/s].
    pub touchdown_speed_mps: f64,
    /// Body tilt from vertical at touchdown [deg].
    pub tilt_deg: f64,
    /// Propellant burned [kg].
    pub propellant_kg: f64,
    /// Lowest height of the base above the glide-slope cone [m] (negative: under it).
    pub cone_margin_min_m: f64,
    /// Flight time [s].
    pub flight_time_s: f64,
    /// Commands received.
    pub commands: u64,
}

/// The episodes file the plant reads: the vehicle (from `cfg`) and the episodes.
fn episodes_yaml(cfg: &TrcConfig, specs: &[EpisodeSpec]) -> String {
    let d = &cfg.problem.descent;
    let mut s = String::from("vehicle:\n");
    let _ = writeln!(s, "  gravity: [{}, {}, {}]", d.gravity[0], d.gravity[1], d.gravity[2]);
    for (k, v) in [
        ("g0", d.g0),
        ("isp", d.isp),
        ("m_wet", d.m_wet),
        ("m_dry", d.m_dry),
        ("rho1", d.rho1()),
        ("rho2", d.rho2()),
        ("glide_slope_deg", d.glide_slope_deg),
        ("position_tol", d.success_position_tol),
        ("speed_tol", d.success_speed_tol),
        ("rate_hz", cfg.sim.rate_hz),
    ] {
        let _ = writeln!(s, "  {k}: {v:?}");
    }
    s.push_str("episodes:\n");
    for e in specs {
        let _ = writeln!(s, "  - index: {}\n    x0: {:?}\n    x_target: {:?}\n    t_go: {:?}", e.index, e.x0, e.x_target, e.t_go);
    }
    s
}

/// The Python of the project's environment (`VIRTUAL_ENV`, else `python3`).
fn python() -> String {
    std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into())
}

/// Flies `specs` with trc_node over DDS against the MuJoCo plant (sim time x `time_scale`, the
/// node's deadline `deadline_s`, `params` more `name:=value` node parameters); returns the
/// plant's episode reports, in order.
///
/// # Errors
/// A process that cannot be started, a plant that exits without reporting every episode, or a
/// results file that cannot be read.
pub fn fly_mujoco(cfg: &TrcConfig, specs: &[EpisodeSpec], time_scale: f64, deadline_s: f64, params: &[String]) -> AnyResult<Vec<MujocoEpisode>> {
    let root = package_root();
    let bin = std::env::current_exe()?.parent().map(Path::to_path_buf).ok_or("no binary directory")?;
    let dir = std::env::temp_dir().join(format!("trc-mujoco-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let episodes = dir.join("episodes.yaml");
    let results = dir.join("results.yaml");
    std::fs::write(&episodes, episodes_yaml(cfg, specs))?;
    let _ = std::fs::remove_file(&results);
    // this run's own domain, discovery on this machine only
    let domain = (160 + std::process::id() % 70).to_string();
    let cfg_file = root.join("config/descent.yaml").display().to_string();
    let overlay = root.join(VEHICLE_OVERRIDES).display().to_string();
    let mut node = Command::new(bin.join("trc_node"))
        .args(["--ros-args", "--params-file", &cfg_file, "--params-file", &overlay, "-p", "use_sim_time:=true", "-p", "node.device:=cpu"])
        .arg("-p")
        .arg(format!("controller.deadline_s:={deadline_s}"))
        .args(params.iter().flat_map(|p| ["-p".to_string(), p.clone()]))
        .env("ROS_DOMAIN_ID", &domain)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start trc_node ({}): {e}; build it first (cargo build --release --bins)", bin.join("trc_node").display()))?;
    let plant_py = root.join("mujoco/lander_plant.py");
    let mut plant = Command::new(python())
        .arg(&plant_py)
        .arg("--episodes")
        .arg(&episodes)
        .arg("--results")
        .arg(&results)
        .arg("--time-scale")
        .arg(time_scale.to_string())
        .args(std::env::var("TRC_MUJOCO_TRACE").is_ok().then_some("--trace"))
        .env("ROS_DOMAIN_ID", &domain)
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .spawn()
        .map_err(|e| format!("cannot start {} with {}: {e} (make setup installs mujoco into .venv)", plant_py.display(), python()))?;
    // each episode: its t_go in sim time plus the plant's 30 s grace, scaled, plus start-up
    let budget_s = 60.0 + specs.iter().map(|s| (s.t_go + 40.0) / time_scale).sum::<f64>();
    let t = Instant::now();
    let bar = indicatif::ProgressBar::new(specs.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("mujoco [{bar:40}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "));
    let status = loop {
        if let Some(st) = plant.try_wait()? {
            break Some(st);
        }
        if t.elapsed().as_secs_f64() > budget_s {
            break None;
        }
        let done = read_results(&results).map(|r| r.len()).unwrap_or(0);
        bar.set_position(done as u64);
        std::thread::sleep(Duration::from_millis(500));
    };
    bar.finish_and_clear();
    if status.is_none() {
        interrupt(&mut plant);
    }
    interrupt(&mut node);
    let rows = read_results(&results)?;
    if rows.len() < specs.len() {
        return Err(format!(
            "the MuJoCo plant reported {} of {} episodes ({}); see its log above",
            rows.len(),
            specs.len(),
            status.map_or_else(|| format!("stopped after {budget_s:.0} s"), |s| format!("exited with {s}"))
        )
        .into());
    }
    Ok(rows)
}

fn read_results(path: &Path) -> AnyResult<Vec<MujocoEpisode>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        out.push(MujocoEpisode::deserialize(doc)?);
    }
    Ok(out)
}

/// `trc bench mujoco`: `episodes` episodes of `seed` (the feasible test-split states from index
/// `first` on) flown against the MuJoCo plant over DDS and,
/// for the row beside it, in lockstep against trc_sim's plant; writes the fragment to `out`.
///
/// # Errors
/// As [`fly_mujoco`]; a controller that cannot be built.
pub fn bench(out: &Path, episodes: usize, (seed, first): (u64, u64), time_scale: f64, deadline_s: f64, params: &[String]) -> AnyResult<()> {
    let root = package_root();
    let cfg = TrcConfig::from_file(root.join("config/descent.yaml"))?;
    let specs = episode_specs(&cfg.problem, seed, first, episodes);
    let started = Instant::now();
    let mj = fly_mujoco(&cfg, &specs, time_scale, deadline_s, params)?;
    let mj_s = started.elapsed().as_secs_f64();
    // the same episodes in lockstep against trc_sim's plant (nominal), the same deadline
    let mut lock_cfg = cfg.clone(); // trc_sim's own settings (config/descent.yaml)
    lock_cfg.controller.deadline_s = deadline_s;
    let mut ctl = RecedingHorizon::from_config(&lock_cfg, None)?;
    let lock: Vec<_> = specs.iter().map(|s| fly(&mut ctl, &lock_cfg.problem, &lock_cfg.sim, s)).collect::<Result<_, _>>()?;
    let mut md = format!(
        "## The controller against an independent physics engine (MuJoCo)\n\nCommand: `trc bench mujoco --episodes {episodes} --seed {seed}{} --time-scale {time_scale} --deadline-ms {:.0}` ({} build, {} cores); MuJoCo plant {mj_s:.0} s.\n\n",
        if first > 0 { format!(" --first-episode {first}") } else { String::new() },
        deadline_s * 1e3,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    let extra = if params.is_empty() { String::new() } else { format!(", and `{}`", params.join("`, `")) };
    let _ = write!(md, "trc_node (shipped model, `config/descent.yaml` with the overrides of `{VEHICLE_OVERRIDES}`{extra}: touchdown gate 3 m at 0.4 m/s, sink tilt up to 15 deg, lateral gains 1 /s and 0.25 /s^2; CPU) ");
    md.push_str("over DDS in sim time against `mujoco/lander_plant.py`: the lander as a 6-DoF MuJoCo rigid body (RK4, 2 ms), the engine along the body axis with a 0.1 s thrust lag, the body turned toward the commanded direction by an attitude loop (6 rad/s, damping 0.8, torque limited to a 15 deg gimbal at the current thrust over the 1.5 m arm plus 1000 N m: `SETTINGS` in the plant), mass falling as |T| / (Isp g0), the centre of mass (its height counted from where the base stands on the pad) reported as `nav_msgs/Odometry` with the twist in the body frame and the mass on `mass`: the Gazebo bridge's interface, read by the node's Odometry adapter (docs/mujoco.md). The same episodes (the first feasible test-split states of the seed, LCvx t_f as the goal's t_go) are flown in lockstep against trc_sim's 3-DoF plant with `config/descent.yaml` alone (its 1 m gate). Success on MuJoCo: touchdown of the base within 1 m of the site under 0.5 m/s, tilt at most 10 deg, never more than 0.27 m under the glide-slope cone. Fuel gap: propellant burned over the LCvx optimum to the ground (the gate's sink included in what is flown).\n\n");
    md.push_str("| plant | episodes | success | touchdown error p50 / p95 [m] | touchdown speed p50 / p95 [m/s] | tilt at touchdown p50 / max [deg] | fuel gap mean / median | flight time mean [s] | ends |\n|---|---|---|---|---|---|---|---|---|\n");
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d.max(1) as f64;
    let gap = |fuel: f64, s: &EpisodeSpec| fuel / s.fuel_opt_kg - 1.0;
    {
        let ok = mj.iter().filter(|r| r.success).count();
        let err: Vec<f64> = mj.iter().map(|r| r.touchdown_error_m).collect();
        let spd: Vec<f64> = mj.iter().map(|r| r.touchdown_speed_mps).collect();
        let tilt: Vec<f64> = mj.iter().map(|r| r.tilt_deg).collect();
        let gaps: Vec<f64> = mj.iter().zip(&specs).map(|(r, s)| gap(r.propellant_kg, s)).collect();
        let ends = mj.iter().filter(|r| r.end != "touchdown").count();
        let _ = writeln!(
            md,
            "| MuJoCo 6-DoF, over DDS (Odometry/Wrench) | {} | {:.1}% | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} / {:.1} | {:+.2}% / {:+.2}% | {:.1} | {} touched down, {ends} timed out or diverged |",
            mj.len(),
            pct(ok, mj.len()),
            percentile(&err, 0.5),
            percentile(&err, 0.95),
            percentile(&spd, 0.5),
            percentile(&spd, 0.95),
            percentile(&tilt, 0.5),
            tilt.iter().copied().fold(0.0, f64::max),
            100.0 * gaps.iter().sum::<f64>() / gaps.len().max(1) as f64,
            100.0 * percentile(&gaps, 0.5),
            mj.iter().map(|r| r.flight_time_s).sum::<f64>() / mj.len().max(1) as f64,
            mj.len() - ends
        );
    }
    {
        let ok = lock.iter().filter(|r| r.result.success).count();
        let err: Vec<f64> = lock.iter().map(|r| r.result.position_error).collect();
        let spd: Vec<f64> = lock.iter().map(|r| r.result.speed).collect();
        let gaps: Vec<f64> = lock.iter().zip(&specs).map(|(r, s)| gap(r.result.fuel_kg, s)).collect();
        let down = lock.iter().filter(|r| r.result.touched_down).count();
        let _ = writeln!(
            md,
            "| trc_sim 3-DoF, lockstep | {} | {:.1}% | {:.2} / {:.2} | {:.2} / {:.2} | - | {:+.2}% / {:+.2}% | {:.1} | {down} touched down |",
            lock.len(),
            pct(ok, lock.len()),
            percentile(&err, 0.5),
            percentile(&err, 0.95),
            percentile(&spd, 0.5),
            percentile(&spd, 0.95),
            100.0 * gaps.iter().sum::<f64>() / gaps.len().max(1) as f64,
            100.0 * percentile(&gaps, 0.5),
            lock.iter().map(|r| r.result.t).sum::<f64>() / lock.len().max(1) as f64,
        );
    }
    let misses: Vec<String> = mj
        .iter()
        .filter(|r| !r.success)
        .map(|r| {
            format!(
                "{} ({}, {:.2} m, {:.2} m/s, tilt {:.1} deg, cone {:+.2} m, {} commands)",
                r.index, r.end, r.touchdown_error_m, r.touchdown_speed_mps, r.tilt_deg, r.cone_margin_min_m, r.commands
            )
        })
        .collect();
    let _ = writeln!(md, "\nMuJoCo misses: {}.", if misses.is_empty() { "none".to_string() } else { misses.join("; ") });
    crate::bench::write_out(out, &md)
}
