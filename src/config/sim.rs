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
            thrust_scale_error: 0.0,
            thrust_dir_error_deg: 0.0,
            mass_error: 0.0,
            pos_noise_m: 0.0,
            vel_noise_mps: 0.0,
            latency_s: 0.0,
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
        ] {
            non_negative(f, v)?;
        }
        if self.internal_hz < self.rate_hz {
            return Err(ConfigError::invalid("sim.internal_hz", "must be at least sim.rate_hz"));
        }
        Ok(())
    }

    /// The same settings with every disturbance on at a moderate level (the benchmark's
    /// "with disturbances" case): thrust magnitude 2%, direction 1 deg, mass 1%, noise 0.1 m /
    /// 0.02 m/s, latency 20 ms.
    pub fn with_default_disturbances(mut self) -> Self {
        self.thrust_scale_error = 0.02;
        self.thrust_dir_error_deg = 1.0;
        self.mass_error = 0.01;
        self.pos_noise_m = 0.1;
        self.vel_noise_mps = 0.02;
        self.latency_s = 0.02;
        self
    }
}
