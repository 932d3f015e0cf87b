//! `trc`: the trc_control command line.
//!
//! ```text
//! trc demo --problem descent --episodes 5 --seed 0     # the main job: closed loop over DDS (trc_sim + trc_node)
//! trc launch descent sim:=true episodes:=3          # the equivalent of ros2 launch trc_control descent.launch.py
//! trc closed-loop --episodes 100 --disturbances harsh  # lockstep closed loop in one process (benchmarks)
//! trc baseline --problem vanderpol                   # classical feedback-law baseline
//! trc gen-data --problem descent --count 5000 --seed 1 --split train --out data/descent_train.safetensors  # deterministic
//! trc gen-data ... --shard 0/4           # one of four shards (cluster job arrays)
//! trc merge-data --out all.safetensors shard0.safetensors shard1.safetensors ...
//! trc bench solvers --out bench/solvers.md
//! trc bench report                        # assemble bench/*.md into BENCHMARKS.md
//! trc record -o flight1                    # record the controller's topics into a rosbag2 MCAP folder
//! trc play flight1 --clock --topics state,goal   # publish a bag again, like ros2 bag play
//! trc replay flight1                       # answer the bag's states again (no DDS) and compare
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trc_control::config::{Disturbances, ProblemKind, TrcConfig};
use trc_control::data::{Dataset, GenerateOptions, Split};

mod bag;
mod bench;
mod faults;
mod fly;
mod launcher;
mod learn;
#[cfg(feature = "ros")]
mod mujoco;
#[cfg(feature = "ros")]
mod reliability;

/// trc_control command line.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The main job: closed-loop episodes over DDS, trc_sim and trc_node as separate processes
    /// (the launch file with sim:=true, use_sim_time), with the shipped model; prints a table per
    /// episode and writes a trajectory plot.
    Demo {
        /// Problem to fly.
        #[arg(long, value_enum, default_value = "descent")]
        problem: ProblemArg,
        /// Number of episodes.
        #[arg(long, default_value_t = 5)]
        episodes: u32,
        /// Seed of the episodes (test split: never seen in training).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sim time per wall time.
        #[arg(long, default_value_t = 4.0)]
        time_scale: f64,
        /// Checkpoint stem (default models/<problem>).
        #[arg(long)]
        model: Option<String>,
        /// Trajectory plot (PNG); default target/demo/<problem>.png.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Start the nodes of launch/<problem>.launch.py (the equivalent of `ros2 launch`), e.g.
    /// `trc launch descent sim:=true episodes:=3`.
    Launch {
        /// Problem (launch file).
        #[arg(value_enum)]
        problem: ProblemArg,
        /// Launch arguments name:=value.
        args: Vec<String>,
    },
    /// Record topics into a rosbag2 MCAP folder (raw CDR; `ros2 bag`, Foxglove and PlotJuggler
    /// open it) until Ctrl-C or --duration. Default topics: the controller's state, odom, mass,
    /// goal, control_sequence, command, /diagnostics, /clock and trc_sim's landing.
    #[cfg(feature = "ros")]
    Record {
        /// Output folder (must not exist).
        #[arg(short, long)]
        out: PathBuf,
        /// Topics, comma-separated (default: the controller's).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Stop after this many seconds (wall time).
        #[arg(long)]
        duration: Option<f64>,
        /// Log times from the recorded /clock (sim time) instead of the system clock.
        #[arg(long)]
        use_sim_time: bool,
    },
    /// Publish a bag's messages with their recorded timing, like `ros2 bag play`.
    #[cfg(feature = "ros")]
    Play {
        /// Bag folder or .mcap file.
        bag: PathBuf,
        /// Playback rate factor.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Publish /clock from the bag's log times (for use_sim_time); the bag's own /clock is
        /// then not played.
        #[arg(long)]
        clock: bool,
        /// Topics to play, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Rename a topic: from:=to (repeatable).
        #[arg(long)]
        remap: Vec<String>,
        /// Play again from the start when done, until Ctrl-C.
        #[arg(long = "loop")]
        repeat: bool,
        /// Seconds to wait for subscribers before the first message.
        #[arg(long, default_value_t = 1.0)]
        delay: f64,
        /// Publish the first message of each latched (transient-local) topic, e.g. the goal,
        /// 0.5 s before the rest: DDS does not order messages across topics, and a state that
        /// overtakes its goal is answered FAILED (no goal yet).
        #[arg(long)]
        latched_first: bool,
    },
    /// Answer a bag's recorded states and goals again with the controller core, in bag time (no
    /// DDS, no wall clock: deterministic), and compare each answer with the recorded
    /// control_sequence; exits 1 beyond the tolerance.
    Replay {
        /// Bag folder or .mcap file.
        bag: PathBuf,
        /// Config (default config/descent.yaml): another config is a regression check.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Checkpoint stem (default node.model of the config): another model is a regression check.
        #[arg(long)]
        model: Option<String>,
        /// ignore: every inference finishes (pure function replay; recorded ANYTIME /
        /// FALLBACK_SHIFTED answers are not compared); recorded: impose each recorded cycle's
        /// deadline outcome.
        #[arg(long, value_enum, default_value = "ignore")]
        deadline: DeadlineArg,
        /// Largest |u - u_rec| [N for descent] of a matching cycle.
        #[arg(long, default_value_t = 1e-6)]
        tol_u: f64,
        /// Table rows printed (differing cycles first).
        #[arg(long, default_value_t = 20)]
        rows: usize,
        /// Plot (PNG) of |u - u_rec| and the predicted terminal errors over the flight.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Also write the report (Markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the fault bag of the replay tests from a recorded landing (docs/rosbags.md): NaN
    /// state, stale stamp, goal change mid-flight, time jump backwards, wrong length.
    MakeFaultBag {
        /// The recorded landing (bag folder or .mcap).
        #[arg(long)]
        from: PathBuf,
        /// Output folder (must not exist).
        #[arg(short, long)]
        out: PathBuf,
        /// States of the landing copied (at least 50).
        #[arg(long, default_value_t = 60)]
        cycles: usize,
    },
    /// Closed-loop episodes with the classical baseline feedback law (ZEM/ZEV, PD) on the f64 plant.
    Baseline {
        /// Problem to fly.
        #[arg(long, value_enum, default_value = "descent")]
        problem: ProblemArg,
        /// Config file (ROS 2 params-file or bare form); default config/<problem>.yaml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of episodes.
        #[arg(long, default_value_t = 5)]
        episodes: usize,
        /// Seed of the initial states (the test split: the distribution TRC is judged on).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Generate optimal demonstrations (parallel over cores, deterministic per seed).
    GenData {
        /// Problem.
        #[arg(long, value_enum)]
        problem: ProblemArg,
        /// Config file; default config/<problem>.yaml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of samples (over all shards).
        #[arg(long)]
        count: u64,
        /// Base seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Split: train, val or test (disjoint random streams).
        #[arg(long, value_enum, default_value = "train")]
        split: Split,
        /// This shard as i/n (e.g. 0/4): indices [i count/n, (i+1) count/n).
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// Output .safetensors file (a .report.yaml with timings is written beside it).
        #[arg(long)]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Closed-loop episodes in one process: the receding-horizon controller (TRC) against the
    /// plant in lockstep, per-episode table, summary and trajectory plot.
    ClosedLoop {
        /// Problem.
        #[arg(long, value_enum, default_value = "descent")]
        problem: ProblemArg,
        /// Config file; default config/<problem>.yaml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Checkpoint stem (default: node.model of the config, else models/<problem>).
        #[arg(long)]
        model: Option<String>,
        /// Policy: trc or solver.
        #[arg(long)]
        policy: Option<String>,
        /// Episodes.
        #[arg(long, default_value_t = 5)]
        episodes: usize,
        /// Seed of the episodes (test split).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Test-split index of the first episode (to fly again one episode of a longer run:
        /// its state and disturbance draws depend on the seed and the index only).
        #[arg(long, default_value_t = 0)]
        first_episode: u64,
        /// Disturbances from the catalogue: none, mild (the flag alone), harsh or outage
        /// (docs/problems.md; replaces the config's sim disturbance fields).
        #[arg(long, num_args = 0..=1, default_missing_value = "mild")]
        disturbances: Option<Disturbances>,
        /// Fly this scenario file (x0, target, vehicle; `scenarios/`) instead of sampled states.
        #[arg(long, conflicts_with = "x0")]
        scenario: Option<PathBuf>,
        /// Fly from this initial state (comma-separated, problem units), with --target.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, requires = "target")]
        x0: Option<Vec<f64>>,
        /// Target state of --x0 (comma-separated; descent: its mass entry is free).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, requires = "x0")]
        target: Option<Vec<f64>>,
        /// Landing time of --x0 [s] (0 = the optimum's t_f).
        #[arg(long, default_value_t = 0.0)]
        t_go: f64,
        /// Control rate [Hz] (default: sim.rate_hz of the config).
        #[arg(long)]
        rate: Option<f64>,
        /// Deadline [ms] (default: controller.deadline_s of the config).
        #[arg(long)]
        deadline_ms: Option<f64>,
        /// Warm start from the shifted previous plan (true) or refine from the InitialDecoder
        /// (false); default: controller.warm_start of the config (off for the shipped models).
        #[arg(long)]
        warm_start: Option<bool>,
        /// Markdown report file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Trajectory plot (PNG).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// DAgger round for descent: fly the model in closed loop on training-split episodes,
    /// record the states it visits (t_go above the terminal phase), label them with LCvx at
    /// their time-to-go, and write them as a training set.
    Dagger {
        /// Checkpoint stem flown.
        #[arg(long)]
        model: String,
        /// Template dataset (problem and metadata; e.g. the descent training set).
        #[arg(long)]
        template: PathBuf,
        /// Episodes.
        #[arg(long, default_value_t = 50)]
        episodes: usize,
        /// States kept per episode (evenly spaced).
        #[arg(long, default_value_t = 40)]
        per_episode: usize,
        /// Seed of the training-split episodes (use one not used for the demonstrations).
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Output dataset.
        #[arg(long)]
        out: PathBuf,
    },
    /// Derive mid-flight (shrinking-horizon) descent demonstrations from a descent dataset:
    /// states along the optimal trajectories, perturbed, re-solved with the time-to-go left.
    MidFlight {
        /// Source descent dataset (trc gen-data).
        #[arg(long)]
        from: PathBuf,
        /// Seed of the draws (node k, perturbation).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output .safetensors file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge shards (given in shard order) into the file the unsharded run writes.
    MergeData {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Shard files, in order.
        shards: Vec<PathBuf>,
    },
    /// Train a TRC model on generated demonstrations; writes STEM.safetensors + STEM.yaml (card).
    Train {
        /// Training dataset(s) (trc gen-data --split train, trc mid-flight); repeat to concatenate.
        #[arg(long, required = true, num_args = 1..)]
        train: Vec<PathBuf>,
        /// Validation dataset (--split val).
        #[arg(long)]
        val: PathBuf,
        /// Architecture preset: tiny, small or paper (ModelConfig::tiny, small, paper).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Output checkpoint stem (e.g. models/descent).
        #[arg(long)]
        out: PathBuf,
        /// Epochs.
        #[arg(long, default_value_t = 30)]
        epochs: u64,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Process-supervision weight lambda (0 = behaviour cloning only).
        #[arg(long, default_value_t = 0.1)]
        lambda: f64,
        /// Terminal loss weight w_T (descent, Van der Pol; 0 = none).
        #[arg(long, default_value_t = 0.05)]
        terminal_weight: f64,
        /// Cost-relative behaviour cloning: weight floor (0 = off; see TrainConfig::bc_relative_floor).
        #[arg(long, default_value_t = 0.0)]
        bc_relative_floor: f64,
        /// Behaviour-cloning weight on the InitialDecoder's guess u^(0) (0 = off; see TrainConfig::init_weight).
        #[arg(long, default_value_t = 0.0)]
        init_weight: f64,
        /// Monotone acceptance, in training and in the model it writes (see ModelConfig::accept).
        #[arg(long)]
        accept: bool,
        /// Monotone acceptance in the model it writes only, not in training (for `off` models: in
        /// training it starves the later iterations of gradient; docs/refinement-log.md).
        #[arg(long, conflicts_with = "accept")]
        accept_at_inference: bool,
        /// With --accept, for a quadratic cost in the step / corrected modes: the acceptance holds
        /// the terminal error too, with an error-holding cost step as the fallback (see
        /// ModelConfig::joint_monotone).
        #[arg(long, requires = "accept")]
        joint_monotone: bool,
        /// TRM-style truncation (no gradient across outer iterations).
        #[arg(long)]
        truncate: bool,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Horizon tokens T (ablation; default: the preset's). N must be a multiple of T.
        #[arg(long)]
        tokens: Option<i64>,
        /// Device: auto (CUDA if available), cpu, cuda.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Sensitivity features: off, input, step or corrected (see ModelConfig::newton; default: the preset's, off).
        #[arg(long)]
        newton: Option<String>,
        /// Outer iterations K the model runs by default (default: the preset's).
        #[arg(long)]
        outer: Option<i64>,
        /// Inner iterations n per outer iteration (default: the preset's).
        #[arg(long)]
        inner: Option<i64>,
        /// Operator training: draw each batch's K from 1..=OUTER_MAX (0 = always the model's K).
        #[arg(long, default_value_t = 0)]
        outer_max: i64,
        /// Operator training: fraction of chains started away from the InitialDecoder (u*, perturbed, shifted, other instance, replay).
        #[arg(long, default_value_t = 0.0)]
        start_mix: f64,
        /// Operator training: level of the structured noise on perturbed starts (normalised units).
        #[arg(long, default_value_t = 0.5)]
        start_noise: f64,
        /// Continue an interrupted run of the same command from OUT.resume.* (written after every epoch).
        #[arg(long)]
        resume: bool,
        /// Wall-time budget of this invocation [s]: stop after the first epoch that ends past it,
        /// leaving the resume point (run the same command with --resume to go on). For long CPU
        /// runs (the `paper` preset) spread over several sessions. Default: no budget.
        #[arg(long)]
        budget_s: Option<f64>,
        /// Arithmetic of the training forward passes: fp32, or bf16 mixed precision (autocast;
        /// for CUDA: weights, optimiser and validation stay f32). Recorded in the card.
        #[arg(long, default_value = "fp32")]
        precision: String,
    },
    /// Evaluate a model on a held-out dataset; writes a markdown report.
    Eval {
        /// Checkpoint stem.
        #[arg(long)]
        model: PathBuf,
        /// Test dataset (--split test).
        #[arg(long)]
        test: PathBuf,
        /// Outer iterations to evaluate (the ablation K in {1,2,3,5}).
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,5")]
        ks: Vec<i64>,
        /// A second checkpoint to compare (e.g. the lambda = 0 ablation).
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Report file (default STEM.eval.md).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the test metrics into the model card.
        #[arg(long)]
        update_card: bool,
        /// Prefix of the metric names --update-card writes (`test`; e.g. `test_seed2` for a second
        /// test split from another seed, kept beside the first).
        #[arg(long, default_value = "test")]
        card_prefix: String,
        /// K sweep: report every iterate k = 0..=SWEEP of one chain (0 = no sweep).
        #[arg(long, default_value_t = 10)]
        sweep: i64,
    },
    /// Benchmarks; each writes a markdown fragment, `report` assembles BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Solver solve-time p50/p99, iterations, LCvx losslessness and fuel vs t_f.
    Solvers {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/solvers.md")]
        out: PathBuf,
        /// Instances per problem for timing.
        #[arg(long, default_value_t = 50)]
        instances: u64,
        /// Descent instances for the losslessness statistics.
        #[arg(long, default_value_t = 1000)]
        lossless_samples: u64,
        /// Seed (the test split of this seed is used).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Dataset generation wall time (5,000 descent + 5,000 Van der Pol by default).
    Datasets {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/datasets.md")]
        out: PathBuf,
        /// Samples per problem.
        #[arg(long, default_value_t = 5000)]
        count: u64,
        /// Directory for the generated files.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Closed-loop landing success and fuel gap over seeded episodes, without and with
    /// disturbances (lockstep, in one process, the shipped descent model).
    ClosedLoop {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/closed_loop.md")]
        out: PathBuf,
        /// Episodes per case.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Seed (test split).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Policies to fly, comma-separated: trc (with the network-only rows), zem_zev, solver
        /// (the LCvx policy). Default: all three.
        #[arg(long, value_delimiter = ',', default_value = "trc,zem_zev,solver")]
        policies: Vec<String>,
        /// Where each row (cell) is kept once flown; a rerun of the same command reuses the cells
        /// whose configuration, episodes and model are unchanged and flies the rest.
        #[arg(long, default_value = "bench/cells")]
        cells: PathBuf,
        /// Start no new cell after this many minutes (0 = no limit); the rest are listed as
        /// pending and flown by the next run of the same command.
        #[arg(long, default_value_t = 0.0)]
        budget_min: f64,
        /// Fly nothing: write the report from the cells already flown (rows without one pending).
        #[arg(long)]
        report_only: bool,
    },
    /// End-to-end latency state-in -> sequence-out over DDS (trc_sim + trc_node processes, real
    /// time) at 10 and 20 Hz.
    Latency {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/latency.md")]
        out: PathBuf,
        /// Episodes per rate.
        #[arg(long, default_value_t = 1)]
        episodes: u32,
    },
    /// Batch-1 TRC inference latency (K outer iterations) next to one LCvx solve, same instances;
    /// with --batch, the batched table instead (several vehicles refined in one call).
    Inference {
        /// Checkpoint stem of a descent model; without one, the --preset architecture with
        /// random weights is timed (latency does not depend on the weights; labelled as such).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Preset timed when no --model is given.
        #[arg(long, default_value = "paper")]
        preset: String,
        /// Sensitivity features of the timed preset (off, input, step, corrected; with --model,
        /// the card's).
        #[arg(long, default_value = "off")]
        newton: String,
        /// Output markdown fragment [default: bench/inference.md, with --batch
        /// bench/inference_batch_<device>.md].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Batch sizes B (comma-separated, e.g. 1,8,64,512,4096): one call refines B problems at
        /// once (`TrcPolicy::refine_batch`); reports p50/p99 per call and per vehicle.
        #[arg(long, value_delimiter = ',')]
        batch: Vec<usize>,
        /// Instances (test split, seed 7).
        #[arg(long, default_value_t = 50)]
        instances: u64,
        /// Timed repetitions per instance.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Device of the network: auto (CUDA if available), cpu, cuda.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// libtorch intra-op threads (0 = libtorch's default, one per core). Default 1, as the
        /// node (`node.torch_threads`): with a core busy elsewhere, more threads wait on each
        /// other at every parallel region.
        #[arg(long, default_value_t = 1)]
        torch_threads: i32,
        /// With --batch on CUDA: replay each B as a CUDA graph (`node.cuda_graph`; captured in
        /// the warm-up call) or run eagerly (`--cuda-graph false`). Without --batch on CUDA both
        /// are timed side by side.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        cuda_graph: bool,
    },
    /// The controller against an independent physics engine (docs/mujoco.md): trc_node over DDS
    /// fed by mujoco/lander_plant.py (6-DoF MuJoCo lander, Odometry/Wrench), next to the same
    /// episodes in lockstep against trc_sim's plant.
    #[cfg(feature = "ros")]
    Mujoco {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/mujoco.md")]
        out: PathBuf,
        /// Episodes (the first feasible test-split states of --seed).
        #[arg(long, default_value_t = 50)]
        episodes: usize,
        /// Seed (test split).
        #[arg(long, default_value_t = 37)]
        seed: u64,
        /// First test-split index of the seed (the episodes are the feasible ones from it on).
        #[arg(long, default_value_t = 0)]
        first_episode: u64,
        /// Sim time per wall time.
        #[arg(long, default_value_t = 2.0)]
        time_scale: f64,
        /// The node's deadline per cycle [ms] (wall time; sim time runs --time-scale faster).
        #[arg(long, default_value_t = 50.0)]
        deadline_ms: f64,
        /// More trc_node parameters, `name:=value` (repeatable), e.g. `controller.gate_max_tilt_deg:=15`.
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Soak and burst over DDS (docs/reliability.md): trc_sim + trc_node in real time for
    /// --soak-s with an optional busy process on core 1, then states at about 1 kHz for
    /// --burst-s; answers, late, FAILED, landings and the node's memory.
    #[cfg(feature = "ros")]
    Reliability {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/reliability.md")]
        out: PathBuf,
        /// Soak length [s].
        #[arg(long, default_value_t = 600.0)]
        soak_s: f64,
        /// Control rate of the soak [Hz].
        #[arg(long, default_value_t = 20.0)]
        rate_hz: f64,
        /// Run a busy process (`yes`) pinned to core 1 during the soak.
        #[arg(long)]
        busy: bool,
        /// Burst length [s].
        #[arg(long, default_value_t = 20.0)]
        burst_s: f64,
    },
    /// The fault catalogue (docs/reliability.md): implausible, malformed and hostile inputs fed to
    /// the controller core, expected and observed answers side by side; exit 1 if any differs.
    Faults {
        /// Output markdown fragment.
        #[arg(long, default_value = "bench/faults.md")]
        out: PathBuf,
    },
    /// Assemble bench/*.md into BENCHMARKS.md.
    Report {
        /// Fragment directory.
        #[arg(long, default_value = "bench")]
        dir: PathBuf,
        /// Output file.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProblemArg {
    Descent,
    Vanderpol,
    #[value(name = "double_integrator", alias = "double-integrator")]
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

/// `trc replay --deadline`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DeadlineArg {
    /// Pure function replay.
    Ignore,
    /// Impose the recorded deadline outcomes.
    Recorded,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo { problem, episodes, seed, time_scale, model, plot } => {
            let kind: ProblemKind = problem.into();
            let plot = plot.unwrap_or_else(|| launcher::package_root().join(format!("target/demo/{kind}.png")));
            exit(launcher::demo(kind, episodes, seed, time_scale, model, &plot))
        }
        Cmd::Launch { problem, args } => match launcher::launch(problem.into(), &args) {
            Ok(st) if st.success() => ExitCode::SUCCESS,
            Ok(st) => {
                log::error!("launch: exited with {st}");
                ExitCode::from(1)
            }
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "ros")]
        Cmd::Record { out, topics, duration, use_sim_time } => exit(bag::record(&bag::RecordArgs { out, topics, duration_s: duration, use_sim_time })),
        #[cfg(feature = "ros")]
        Cmd::Play { bag, rate, clock, topics, remap, repeat, delay, latched_first } => {
            exit(bag::play(&bag::PlayArgs { bag, rate, clock, topics, remap, repeat, delay_s: delay, latched_first }))
        }
        Cmd::MakeFaultBag { from, out, cycles } => exit(bag::make_fault_bag(&from, &out, cycles)),
        Cmd::Replay { bag, config, model, deadline, tol_u, rows, plot, out } => {
            let deadline = match deadline {
                DeadlineArg::Ignore => trc_control::bag::replay::DeadlineMode::Ignore,
                DeadlineArg::Recorded => trc_control::bag::replay::DeadlineMode::Recorded,
            };
            match bag::replay_cmd(&bag::ReplayArgs { bag, config, model, deadline, tol_u, rows, plot, out }) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Baseline { problem, config, episodes, seed } => match baseline(problem.into(), config, episodes, seed) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::GenData { problem, config, count, seed, split, shard, out, threads } => {
            exit(gen_data(problem.into(), config, count, seed, split, &shard, &out, threads))
        }
        Cmd::MergeData { out, shards } => exit(merge_data(&out, &shards)),
        Cmd::ClosedLoop {
            problem,
            config,
            model,
            policy,
            episodes,
            seed,
            first_episode,
            disturbances,
            scenario,
            x0,
            target,
            t_go,
            rate,
            deadline_ms,
            warm_start,
            out,
            plot,
        } => exit(closed_loop(
            problem.into(),
            config,
            model,
            policy,
            episodes,
            (seed, first_episode),
            disturbances,
            match (scenario, x0, target) {
                (Some(f), _, _) => Some(ScenarioArg::File(f)),
                (None, Some(x0), Some(target)) => Some(ScenarioArg::States(x0, target, t_go)),
                _ => None,
            },
            rate,
            deadline_ms,
            warm_start,
            out.as_deref(),
            plot.as_deref(),
        )),
        Cmd::Dagger { model, template, episodes, per_episode, seed, out } => exit(dagger(&model, &template, episodes, per_episode, seed, &out)),
        Cmd::MidFlight { from, seed, out } => exit(mid_flight(&from, seed, &out)),
        Cmd::Train {
            train,
            val,
            preset,
            out,
            epochs,
            batch_size,
            lr,
            lambda,
            terminal_weight,
            bc_relative_floor,
            init_weight,
            accept,
            accept_at_inference,
            joint_monotone,
            truncate,
            seed,
            tokens,
            device,
            newton,
            outer,
            inner,
            outer_max,
            start_mix,
            start_noise,
            resume,
            budget_s,
            precision,
        } => {
            let precision = match trc_control::train::Precision::parse(&precision) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("trc train: --precision: {e}");
                    std::process::exit(2);
                }
            };
            let cfg = trc_control::train::TrainConfig {
                precision,
                epochs,
                batch_size,
                lr,
                lambda,
                terminal_weight,
                bc_relative_floor,
                init_weight,
                truncate,
                seed,
                outer_max,
                start_mix,
                start_noise,
                ..Default::default()
            };
            let arch = learn::ArchOverrides { tokens, newton, outer, inner, accept, accept_at_inference, joint_monotone };
            exit(learn::train(&train, &val, &preset, &arch, &out, cfg, &device, resume, budget_s))
        }
        Cmd::Eval { model, test, ks, compare, report, update_card, card_prefix, sweep } => {
            exit(learn::eval(&model, &test, &ks, compare.as_deref(), report.as_deref(), update_card.then_some(card_prefix.as_str()), sweep))
        }
        Cmd::Bench { what } => exit(match what {
            BenchCmd::Solvers { out, instances, lossless_samples, seed } => bench::solvers(&out, instances, lossless_samples, seed),
            BenchCmd::Datasets { out, count, data_dir } => bench::datasets(&out, count, &data_dir),
            BenchCmd::Report { dir, out } => bench::report(&dir, &out),
            BenchCmd::Faults { out } => faults::faults(&out),
            #[cfg(feature = "ros")]
            BenchCmd::Mujoco { out, episodes, seed, first_episode, time_scale, deadline_ms, params } => {
                mujoco::bench(&out, episodes, (seed, first_episode), time_scale, deadline_ms * 1e-3, &params)
            }
            #[cfg(feature = "ros")]
            BenchCmd::Reliability { out, soak_s, rate_hz, busy, burst_s } => reliability::reliability(&out, soak_s, rate_hz, busy, burst_s),
            BenchCmd::ClosedLoop { out, episodes, seed, policies, cells, budget_min, report_only } => {
                bench::closed_loop(&out, episodes, seed, &policies, &cells, budget_min, report_only)
            }
            BenchCmd::Latency { out, episodes } => bench::latency(&out, episodes),
            BenchCmd::Inference { model, preset, newton, out, batch, instances, reps, device, torch_threads, cuda_graph } => {
                if torch_threads > 0 {
                    tch::set_num_threads(torch_threads);
                }
                if batch.is_empty() {
                    let out = out.unwrap_or_else(|| PathBuf::from("bench/inference.md"));
                    bench::inference(model.as_deref(), &preset, &newton, &out, instances, reps, &device)
                } else {
                    let out = out.unwrap_or_else(|| PathBuf::from(format!("bench/inference_batch_{device}.md")));
                    bench::inference_batch(model.as_deref(), &preset, &newton, &out, &batch, instances, reps, &device, cuda_graph)
                }
            }
        }),
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Where `trc closed-loop` takes its initial state from, when not from the sampler.
enum ScenarioArg {
    /// `--scenario FILE`.
    File(PathBuf),
    /// `--x0 ... --target ... [--t-go]`.
    States(Vec<f64>, Vec<f64>, f64),
}

#[allow(clippy::too_many_arguments)]
fn closed_loop(
    kind: ProblemKind,
    config: Option<PathBuf>,
    model: Option<String>,
    policy: Option<String>,
    episodes: usize,
    (seed, first_episode): (u64, u64),
    disturbances: Option<Disturbances>,
    scenario: Option<ScenarioArg>,
    rate: Option<f64>,
    deadline_ms: Option<f64>,
    warm_start: Option<bool>,
    out: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> AnyResult<()> {
    let mut cfg = load_problem_config(kind, config)?;
    if let Some(m) = model {
        cfg.node.model = m;
    }
    if let Some(p) = policy {
        cfg.node.policy = serde_yaml::from_str(&p).map_err(|_| format!("--policy {p}: use trc or solver"))?;
    }
    cfg.sim.seed = seed;
    cfg.sim.first_episode = first_episode;
    if let Some(d) = disturbances {
        cfg.sim = cfg.sim.with_disturbances(d);
    }
    if let Some(r) = rate {
        cfg.sim.rate_hz = r;
    }
    if let Some(d) = deadline_ms {
        cfg.controller.deadline_s = d * 1e-3;
    }
    if let Some(w) = warm_start {
        cfg.controller.warm_start = w;
    }
    cfg.node.validate()?;
    cfg.sim.validate()?;
    cfg.controller.validate()?;
    let started = std::time::Instant::now();
    let scenario = match scenario {
        Some(ScenarioArg::File(f)) => Some(trc_control::scenario::Scenario::from_file(&f)?),
        Some(ScenarioArg::States(x0, xt, t_go)) => Some(trc_control::scenario::Scenario::from_states(x0, xt, t_go)),
        None => None,
    };
    let (rows, solve) = fly::closed_loop_rows(&cfg, episodes, true, scenario.as_ref())?;
    let (succ, gap_mean, gap_med, pos_med, speed_med) = fly::summary(&rows);
    let mut md = format!(
        "Closed loop, {} episodes of {} (seed {seed}, test split), {} Hz, deadline {} ms, disturbances {}, policy {} {}; lockstep in one process, wall {:.0} s.\n\n",
        rows.len(),
        kind,
        cfg.sim.rate_hz,
        cfg.controller.deadline_s * 1e3,
        disturbances.map_or_else(|| "of the config".to_string(), |d| d.to_string()),
        cfg.node.policy,
        if cfg.node.model.is_empty() { format!("models/{kind}") } else { cfg.node.model.clone() },
        started.elapsed().as_secs_f64()
    );
    md.push_str(&fly::table(kind, &rows));
    let (p50, p99) = (trc_control::closed_loop::percentile(&solve, 0.5), trc_control::closed_loop::percentile(&solve, 0.99));
    md.push_str(&if kind == ProblemKind::Descent {
        format!(
            "\nSuccess {:.1}% | fuel gap mean {:+.2}%, median {:+.2}% | median touchdown error {:.2} m, speed {:.2} m/s | solve p50 {p50:.2} ms, p99 {p99:.2} ms\n",
            succ * 100.0,
            gap_mean * 100.0,
            gap_med * 100.0,
            pos_med,
            speed_med,
        )
    } else {
        format!("\nSuccess {:.1}% | median final error |x_N - x_target| {pos_med:.3} | solve p50 {p50:.2} ms, p99 {p99:.2} ms (policy and cost refinement)\n", succ * 100.0)
    });
    let steps: Vec<f64> = rows.iter().map(|r| r.correction_steps_per_plan).filter(|v| v.is_finite()).collect();
    if !steps.is_empty() {
        let what = if kind == ProblemKind::Descent { "Terminal correction: {} Gauss-Newton" } else { "Cost refinement: {} Levenberg-Marquardt" };
        md.push_str(&format!(
            "{} steps per plan (mean over episodes).\n",
            what.replace("{}", &format!("{:.2}", steps.iter().sum::<f64>() / steps.len() as f64))
        ));
    }
    println!("{md}");
    if let Some(o) = out {
        if let Some(d) = o.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(o, &md)?;
    }
    if let Some(p) = plot {
        fly::plot(kind, &rows, p)?;
    }
    Ok(())
}

fn dagger(model: &str, template: &std::path::Path, episodes: usize, per_episode: usize, seed: u64, out: &std::path::Path) -> AnyResult<()> {
    use trc_control::control::RecedingHorizon;
    let tmpl = Dataset::load(template)?;
    let mut cfg = load_problem_config(tmpl.meta.problem.name, None)?;
    cfg.problem = tmpl.meta.problem.clone();
    cfg.node.model = model.to_string();
    cfg.controller.deadline_s = 1.0; // collect what the policy does when it finishes, not timing luck
    let mut ctl = RecedingHorizon::from_config(&cfg, None)?;
    if !ctl.has_policy() {
        return Err(format!("no usable policy: {}", ctl.policy_name()).into());
    }
    let specs = trc_control::closed_loop::episode_specs_in(&cfg.problem, seed, Split::Train, 0, episodes);
    let mut states = Vec::new();
    let (mut landed, started) = (0, std::time::Instant::now());
    let bar = indicatif::ProgressBar::new(specs.len() as u64);
    for spec in &specs {
        let mut rec = Vec::new();
        let r = trc_control::closed_loop::fly_recording(&mut ctl, &cfg.problem, &cfg.sim, spec, Some(&mut rec))?;
        landed += usize::from(r.result.success);
        let rec: Vec<_> = rec.into_iter().filter(|(_, t_go)| *t_go > cfg.controller.terminal_phase_s + 1.0).collect();
        let step = (rec.len() / per_episode.max(1)).max(1);
        states.extend(rec.into_iter().step_by(step).take(per_episode).map(|(x, t_go)| (x, t_go, spec.x_target.clone())));
        bar.inc(1);
    }
    bar.finish_and_clear();
    log::info!("dagger: {} episodes flown ({landed} landed) in {:.0} s, {} states to label", specs.len(), started.elapsed().as_secs_f64(), states.len());
    let (ds, dropped) = trc_control::data::label_states(&tmpl, &states, &GenerateOptions::deterministic_settings(), true);
    ds.save(out)?;
    log::info!("dagger: {} labelled ({} infeasible at their t_go) -> {}", ds.len(), dropped.len(), out.display());
    Ok(())
}

fn mid_flight(from: &std::path::Path, seed: u64, out: &std::path::Path) -> AnyResult<()> {
    let src = Dataset::load(from)?;
    let started = std::time::Instant::now();
    let (ds, dropped) = trc_control::data::mid_flight(&src, seed, &GenerateOptions::deterministic_settings(), true)?;
    for (idx, why) in &dropped {
        log::warn!("mid-flight: source sample {idx} dropped: {why}");
    }
    ds.save(out)?;
    log::info!(
        "mid-flight: {} samples from {} in {:.1} s ({} dropped) -> {}",
        ds.len(),
        src.len(),
        started.elapsed().as_secs_f64(),
        dropped.len(),
        out.display()
    );
    Ok(())
}

fn exit(r: AnyResult<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

fn load_problem_config(kind: ProblemKind, config: Option<PathBuf>) -> AnyResult<TrcConfig> {
    let path = config.unwrap_or_else(|| PathBuf::from(format!("{}/config/{kind}.yaml", env!("CARGO_MANIFEST_DIR"))));
    let cfg = TrcConfig::from_file(&path)?;
    if cfg.problem.name != kind {
        return Err(format!("{} configures `{}`, not `{kind}`: pass --config for {kind}", path.display(), cfg.problem.name).into());
    }
    Ok(cfg)
}

fn parse_shard(s: &str) -> AnyResult<(u64, u64)> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("--shard must look like i/n (e.g. 0/4), got `{s}`"))?;
    let (i, n): (u64, u64) = (i.trim().parse()?, n.trim().parse()?);
    if n == 0 || i >= n {
        return Err(format!("--shard {s}: need 0 <= i < n").into());
    }
    Ok((i, n))
}

#[allow(clippy::too_many_arguments)]
fn gen_data(
    kind: ProblemKind,
    config: Option<PathBuf>,
    count: u64,
    seed: u64,
    split: Split,
    shard: &str,
    out: &std::path::Path,
    threads: Option<usize>,
) -> AnyResult<()> {
    let cfg = load_problem_config(kind, config)?;
    let shard = parse_shard(shard)?;
    if let Some(t) = threads {
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global()?;
    }
    let opts = GenerateOptions { problem: cfg.problem, seed, split, count, shard, settings: GenerateOptions::deterministic_settings(), progress: true };
    log::info!("gen-data: {kind}, {count} samples, seed {seed}, split {split:?}, shard {}/{}, {} threads", shard.0, shard.1, rayon::current_num_threads());
    let (ds, report) = trc_control::data::generate(&opts)?;
    ds.save(out)?;
    let report_path = out.with_extension("report.yaml");
    std::fs::write(&report_path, serde_yaml::to_string(&report)?)?;
    let mut ms = report.solve_ms.clone();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| if ms.is_empty() { f64::NAN } else { ms[((ms.len() - 1) as f64 * p).round() as usize] };
    log::info!(
        "gen-data: {} solved, {} dropped (infeasible or unconverged) of {} in {:.1} s; solve time p50 {:.1} ms, p99 {:.1} ms; wrote {} and {}",
        report.solved,
        report.dropped.len(),
        report.attempted,
        report.wall_s,
        pct(0.5),
        pct(0.99),
        out.display(),
        report_path.display()
    );
    for (idx, why) in report.dropped.iter().take(5) {
        log::info!("  dropped #{idx}: {why}");
    }
    Ok(())
}

fn merge_data(out: &std::path::Path, shards: &[PathBuf]) -> AnyResult<()> {
    let parts = shards.iter().map(Dataset::load).collect::<Result<Vec<_>, _>>()?;
    let merged = Dataset::merge(parts)?;
    merged.save(out)?;
    log::info!("merged {} shards: {} samples -> {}", shards.len(), merged.len(), out.display());
    Ok(())
}

/// `trc baseline`: the classical feedback law from the test-split initial states; true when
/// every episode met the success criterion.
fn baseline(kind: ProblemKind, config: Option<PathBuf>, episodes: usize, seed: u64) -> AnyResult<bool> {
    let cfg = load_problem_config(kind, config)?;
    log::info!("baseline: {episodes} closed-loop {kind} episodes (feedback law on the RK4 plant; test split of seed {seed})");
    let starts = (0..episodes as u64).map(|i| trc_control::data::sample_instance(&cfg.problem, seed, Split::Test, i)).map(|inst| (inst.x0, inst.x_target));
    let runs = trc_control::baseline::run(&cfg.problem, starts)?;
    if kind == ProblemKind::Descent {
        println!("{:>3} {:>28} {:>6} {:>10} {:>10} {:>10} {:>6} {:>5}", "ep", "r0 [m]", "t_f", "pos err", "speed", "fuel [kg]", "viol", "land");
    } else {
        println!("{:>3} {:>18} {:>10} {:>10} {:>6} {:>8}", "ep", "x0", "|x_N - x_t|", "J", "viol", "success");
    }
    for (ep, r) in runs.iter().enumerate() {
        let (e, x0) = (&r.episode, &r.x0);
        let last = e.x.row(e.x.nrows() - 1).transpose();
        if kind == ProblemKind::Descent {
            let (pos, speed, fuel) = ((last.rows(0, 3) - r.x_target.rows(0, 3)).norm(), last.rows(3, 3).norm(), x0[6] - last[6]);
            println!(
                "{ep:>3} ({:>7.1},{:>7.1},{:>7.1}) {:>6.1} {pos:>10.2e} {speed:>10.2e} {fuel:>10.2} {:>6} {:>5}",
                x0[0],
                x0[1],
                x0[2],
                r.t_f,
                e.violations,
                if e.success && e.violations == 0 { "yes" } else { "no" }
            );
        } else {
            println!("{ep:>3} ({:>7.3},{:>7.3}) {:>10.4} {:>10.3} {:>6} {:>8}", x0[0], x0[1], (&last - &r.x_target).norm(), e.cost, e.violations, e.success);
        }
    }
    let ok = runs.iter().filter(|r| r.episode.success).count();
    println!("{ok}/{episodes} episodes met the success criterion");
    Ok(ok == episodes)
}
