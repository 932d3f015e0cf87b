//! `sim.*`: settings of the plant simulator (`trc_sim`, the lockstep closed loop; static).

use serde::{Deserialize, Serialize};

use crate::error::{non_negative, positive, ConfigError};

/// trc_sim settings (`sim.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// State publication rate [Hz] (sim time). Default 10.
    pub rate_hz: f64,
    /// Internal RK4 rate [Hz]. Default 200.
    pub internal_hz: f64,
    /// Sim time per wall time (needs use_sim_time on the controller when != 1). Default 1.
    pub time_scale: f64,
    /// Episodes to fly. Default 1.
    pub episodes: u32,
    /// Seed of the episodes (initial states: the test split of this seed; disturbances). Default 0.
    pub seed: u64,
    /// First episode index. Default 0.
    pub first_episode: u64,
    /// Episode time limit [s]. Default 200; episodes also end at t_f* + 30 s (descent) or after
    /// two horizons (the others), see `closed_loop::episode_sim`.
    pub max_time_s: f64,
    /// Wait this long [s, wall] for the controller's first command of an episode. Default 60.
    pub wait_for_controller_s: f64,
    /// trc_sim: before each episode, wait (within `wait_for_controller_s`) until this many
    /// subscribers outside the process take `state` (the controller, plus a recorder such as
    /// `trc record`, so a bag holds the whole flight). Default 1.
    pub wait_for_subscribers: u32,
    /// Thrust magnitude error bound a (fraction). Default 0.
    pub thrust_scale_error: f64,
    /// Thrust direction error bound [deg]. Default 0.
    pub thrust_dir_error_deg: f64,
    /// Mass-estimate error bound (fraction). Default 0.
    pub mass_error: f64,
    /// Position noise std per axis [m]. Default 0.
    pub pos_noise_m: f64,
    /// Velocity noise std per axis [m/s]. Default 0.
    pub vel_noise_mps: f64,
    /// Command latency [s]. Default 0.
    pub latency_s: f64,
    /// Unmodelled constant acceleration [m/s^2] in a random direction drawn per episode (descent;
    /// wind, an aerodynamic or centre-of-mass bias the guidance model does not have). Default 0.
    pub accel_bias_mps2: f64,
    /// Thrust loss (fraction of the commanded magnitude) for `thrust_loss_s` seconds from a random
    /// time in `fault_window_s` (descent; an engine-out-like transient). Default 0.
    pub thrust_loss: f64,
    /// Duration of the thrust loss [s]. Default 5.
    pub thrust_loss_s: f64,
    /// Controller outage [s]: for this long from a random time in `fault_window_s` no state
    /// reaches the controller (trc_sim publishes none; the lockstep loop skips the controller)
    /// and the plant holds the last command. Default 0.
    pub outage_s: f64,
    /// During an outage the vehicle flies the last control sequence it received, open loop
    /// (true: the plan buffer of the actuation layer), or holds the last command (false).
    /// Default true.
    pub outage_flies_plan: bool,
    /// Episode-time window [s] from which the start of the thrust loss and of the outage are
    /// drawn (uniform; clipped to 60% of the optimum's t_f by the closed loops, so a fault
    /// never starts in the last seconds of a short descent). Default [5, 40].
    pub fault_window_s: [f64; 2],
    /// Scenario file to fly instead of sampled states (`src/scenario.rs`; shipped examples in
    /// `scenarios/`); a relative path is looked up from the working directory, then from the
    /// package root. Empty = states from the sampler (test split of `seed`). Default empty.
    pub scenario: String,
    /// Write one YAML line per episode result to this file (empty = none).
    pub results_file: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            rate_hz: 10.0,
            internal_hz: 200.0,
            time_scale: 1.0,
            episodes: 1,
            seed: 0,
            first_episode: 0,
            max_time_s: 200.0,
            wait_for_controller_s: 60.0,
            wait_for_subscribers: 1,
            thrust_scale_error: 0.0,
            thrust_dir_error_deg: 0.0,
            mass_error: 0.0,
            pos_noise_m: 0.0,
            vel_noise_mps: 0.0,
            latency_s: 0.0,
            accel_bias_mps2: 0.0,
            thrust_loss: 0.0,
            thrust_loss_s: 5.0,
            outage_s: 0.0,
            outage_flies_plan: true,
            fault_window_s: [5.0, 40.0],
            scenario: String::new(),
            results_file: String::new(),
        }
    }
}

impl SimConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("sim.rate_hz", self.rate_hz)?;
        positive("sim.internal_hz", self.internal_hz)?;
        positive("sim.time_scale", self.time_scale)?;
        positive("sim.max_time_s", self.max_time_s)?;
        positive("sim.wait_for_controller_s", self.wait_for_controller_s)?;
        for (f, v) in [
            ("sim.thrust_scale_error", self.thrust_scale_error),
            ("sim.thrust_dir_error_deg", self.thrust_dir_error_deg),
            ("sim.mass_error", self.mass_error),
            ("sim.pos_noise_m", self.pos_noise_m),
            ("sim.vel_noise_mps", self.vel_noise_mps),
            ("sim.latency_s", self.latency_s),
            ("sim.accel_bias_mps2", self.accel_bias_mps2),
            ("sim.thrust_loss_s", self.thrust_loss_s),
            ("sim.outage_s", self.outage_s),
        ] {
            non_negative(f, v)?;
        }
        if !(0.0..=1.0).contains(&self.thrust_loss) {
            return Err(ConfigError::invalid("sim.thrust_loss", format!("{} is not a fraction in [0, 1]", self.thrust_loss)));
        }
        let [a, b] = self.fault_window_s;
        if !(a.is_finite() && b.is_finite() && (0.0..=b).contains(&a)) {
            return Err(ConfigError::invalid("sim.fault_window_s", format!("[{a}, {b}] must be finite with 0 <= start <= end")));
        }
        if self.internal_hz < self.rate_hz {
            return Err(ConfigError::invalid("sim.internal_hz", "must be at least sim.rate_hz"));
        }
        Ok(())
    }

    /// The same settings with every disturbance on at a moderate level: [`Disturbances::Mild`].
    pub fn with_default_disturbances(self) -> Self {
        self.with_disturbances(Disturbances::Mild)
    }

    /// The same settings with the disturbances of a catalogue entry (see [`Disturbances`]); the
    /// disturbance fields are replaced, everything else stays.
    pub fn with_disturbances(mut self, d: Disturbances) -> Self {
        let base = SimConfig::default();
        (self.thrust_scale_error, self.thrust_dir_error_deg, self.mass_error) = (base.thrust_scale_error, base.thrust_dir_error_deg, base.mass_error);
        (self.pos_noise_m, self.vel_noise_mps, self.latency_s) = (base.pos_noise_m, base.vel_noise_mps, base.latency_s);
        (self.accel_bias_mps2, self.thrust_loss, self.thrust_loss_s, self.outage_s) =
            (base.accel_bias_mps2, base.thrust_loss, base.thrust_loss_s, base.outage_s);
        match d {
            Disturbances::None => {}
            Disturbances::Mild | Disturbances::Outage => {
                self.thrust_scale_error = 0.02;
                self.thrust_dir_error_deg = 1.0;
                self.mass_error = 0.01;
                self.pos_noise_m = 0.1;
                self.vel_noise_mps = 0.02;
                self.latency_s = 0.02;
                if d == Disturbances::Outage {
                    self.outage_s = 4.0;
                }
            }
            Disturbances::Harsh => {
                self.thrust_scale_error = 0.05;
                self.thrust_dir_error_deg = 3.0;
                self.mass_error = 0.03;
                self.pos_noise_m = 0.5;
                self.vel_noise_mps = 0.05;
                self.latency_s = 0.05;
                self.accel_bias_mps2 = 0.05;
                self.thrust_loss = 0.10;
                self.thrust_loss_s = 5.0;
            }
        }
        self
    }
}

/// The disturbance catalogue of the benchmarks (`trc closed-loop --disturbances <name>`; the
/// closed-loop table of BENCHMARKS.md). Each entry is a set of [`SimConfig`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disturbances {
    /// None: the nominal plant.
    None,
    /// Thrust magnitude 2%, direction 1 deg, mass estimate 1%, noise 0.1 m / 0.02 m/s per axis,
    /// latency 20 ms.
    Mild,
    /// Thrust magnitude 5%, direction 3 deg, mass estimate 3%, noise 0.5 m / 0.05 m/s, latency
    /// 50 ms, an unmodelled constant acceleration of 0.05 m/s^2 in a random direction, and a 10%
    /// thrust loss for 5 s from a random time.
    Harsh,
    /// `Mild`, plus a 4 s controller outage from a random time (no state reaches the controller;
    /// the vehicle flies the last sequence it received, or holds the last command without
    /// `outage_flies_plan`).
    Outage,
}

impl std::str::FromStr for Disturbances {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" => Ok(Self::None),
            "mild" | "on" => Ok(Self::Mild),
            "harsh" => Ok(Self::Harsh),
            "outage" => Ok(Self::Outage),
            _ => Err(format!("disturbances '{s}': use none, mild, harsh or outage")),
        }
    }
}

impl std::fmt::Display for Disturbances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Mild => "mild",
            Self::Harsh => "harsh",
            Self::Outage => "outage",
        })
    }
}
