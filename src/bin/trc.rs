//! `trc`: the trc_control command line.
//!
//! ```text
//! trc demo --problem descent --episodes 5 --seed 0     # closed-loop landings on the f64 plant
//! trc demo --problem vanderpol
//! ```
//! Later issues add gen-data, train, eval, bench and replay.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trc_control::config::{ProblemKind, TrcConfig};
use trc_control::demo::{fly_descent, fly_pd, Episode};
use trc_control::problems::{PoweredDescent, Problem, VanDerPol, DoubleIntegrator};

/// trc_control command line.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Closed-loop episodes with the classical baseline feedback law (the demo until the TRC node lands).
    Demo {
        /// Problem to fly.
        #[arg(long, value_enum, default_value = "descent")]
        problem: ProblemArg,
        /// Config file (ROS 2 params-file or bare form); default config/<problem>.yaml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of episodes.
        #[arg(long, default_value_t = 5)]
        episodes: usize,
        /// Seed for the initial states.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProblemArg {
    Descent,
    Vanderpol,
    DoubleIntegrator,
}

impl From<ProblemArg> for ProblemKind {
    fn from(p: ProblemArg) -> Self {
        match p {
            ProblemArg::Descent => ProblemKind::Descent,
            ProblemArg::Vanderpol => ProblemKind::Vanderpol,
            ProblemArg::DoubleIntegrator => ProblemKind::DoubleIntegrator,
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo { problem, config, episodes, seed } => match demo(problem.into(), config, episodes, seed) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

fn demo(kind: ProblemKind, config: Option<PathBuf>, episodes: usize, seed: u64) -> Result<bool, Box<dyn std::error::Error>> {
    let path = config.unwrap_or_else(|| PathBuf::from(format!("{}/config/{kind}.yaml", env!("CARGO_MANIFEST_DIR"))));
    let cfg = TrcConfig::from_file(&path)?;
    if cfg.problem.name != kind {
        return Err(format!("{} configures `{}`, not `{kind}`: pass --config for {kind}", path.display(), cfg.problem.name).into());
    }
    log::info!("demo: {episodes} closed-loop {kind} episodes (baseline feedback law on the RK4 plant), config {}", path.display());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ok = 0;
    match kind {
        ProblemKind::Descent => {
            let p = PoweredDescent::new(cfg.problem.descent.clone())?;
            let target = p.default_target();
            println!("{:>3} {:>28} {:>6} {:>10} {:>10} {:>10} {:>6} {:>5}", "ep", "r0 [m]", "t_f", "pos err", "speed", "fuel [kg]", "viol", "land");
            for ep in 0..episodes {
                let x0 = sample_descent(&p, &mut rng);
                // ZEM/ZEV has no t_f of its own: sweep it and keep the cheapest landing.
                let best = (4..=20)
                    .map(|i| (i as f64 * 5.0, fly_descent(&p, &x0, &target, i as f64 * 5.0, 0.1)))
                    .min_by(|a, b| rank(&p, &a.1).partial_cmp(&rank(&p, &b.1)).unwrap_or(std::cmp::Ordering::Equal))
                    .ok_or("no t_f candidates")?;
                let (t_f, e) = best;
                let last = e.x.row(e.x.nrows() - 1);
                let pos = (last.columns(0, 3) - target.rows(0, 3).transpose()).norm();
                let speed = last.columns(3, 3).norm();
                let fuel = x0[6] - last[6];
                ok += e.success as usize;
                println!(
                    "{ep:>3} ({:>7.1},{:>7.1},{:>7.1}) {t_f:>6.1} {pos:>10.2e} {speed:>10.2e} {fuel:>10.2} {:>6} {:>5}",
                    x0[0], x0[1], x0[2], e.violations, if e.success && e.violations == 0 { "yes" } else { "no" }
                );
            }
        }
        ProblemKind::Vanderpol | ProblemKind::DoubleIntegrator => {
            let (p, mu): (Box<dyn Problem>, Option<f64>) = if kind == ProblemKind::Vanderpol {
                (Box::new(VanDerPol::new(cfg.problem.vanderpol.clone())?), Some(cfg.problem.vanderpol.mu))
            } else {
                (Box::new(DoubleIntegrator::new(cfg.problem.double_integrator.clone())?), None)
            };
            let dt = p.dt_for(p.default_t_go());
            let target = p.default_target();
            println!("{:>3} {:>18} {:>10} {:>10} {:>6} {:>8}", "ep", "x0", "|x_N|", "J", "viol", "success");
            for ep in 0..episodes {
                let x0 = DVector::from_fn(2, |_, _| rng.gen_range(-2.0..2.0));
                let e = fly_pd(p.as_ref(), &x0, &target, dt, mu);
                let xn = e.x.row(e.x.nrows() - 1).transpose() - &target;
                ok += e.success as usize;
                println!("{ep:>3} ({:>7.3},{:>7.3}) {:>10.4} {:>10.3} {:>6} {:>8}", x0[0], x0[1], xn.norm(), e.cost, e.violations, e.success);
            }
        }
    }
    println!("{ok}/{episodes} episodes met the success criterion");
    Ok(ok == episodes)
}

/// Ranks descent episodes: successful and feasible first, then by fuel; else by miss distance.
fn rank(p: &PoweredDescent, e: &Episode) -> f64 {
    let last = e.x.row(e.x.nrows() - 1);
    let miss = last.columns(0, 6).norm();
    if e.success && e.violations == 0 {
        e.cost * p.params().alpha()
    } else {
        1e6 + miss
    }
}

/// Initial descent states for the demo: horizontal offset up to 1 km, altitude 1.2..2.5 km
/// (inside the glide slope), descending at 20..60 m/s with up to 30 m/s sideways, wet mass.
fn sample_descent(p: &PoweredDescent, rng: &mut ChaCha8Rng) -> DVector<f64> {
    let prm = p.params();
    DVector::from_vec(vec![
        rng.gen_range(-1000.0..1000.0),
        rng.gen_range(-1000.0..1000.0),
        rng.gen_range(1200.0..2500.0),
        rng.gen_range(-30.0..30.0),
        rng.gen_range(-30.0..30.0),
        rng.gen_range(-60.0..-20.0),
        prm.m_wet,
    ])
}
