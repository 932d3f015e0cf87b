//! The controller's answer to one state: a control sequence with its prediction and status.
//! ROS-free; [`crate::ros`] converts it to and from `trc_control/msg/ControlSequence`.

use nalgebra::{DMatrix, DVector};

/// How a [`Plan`] was obtained (the `status` constants of `ControlSequence.msg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PlanStatus {
    /// Refinement finished within the deadline.
    Converged = 0,
    /// Deadline hit during refinement; the best finished iterate.
    Anytime = 1,
    /// A missed deadline: nothing usable in time, the previous solution shifted to this state's
    /// time (and finished by the mission: corrected from the measured state).
    FallbackShifted = 2,
    /// No previous solution or bad input; `u` holds the problem's safe command.
    Failed = 3,
    /// A planned terminal phase, not a missed deadline: descent follows its last refined plan
    /// re-corrected from the measured state (the last `terminal_phase_s`), then sinks at the
    /// touchdown gate's constant rate below the gate.
    Terminal = 4,
}

impl PlanStatus {
    /// The status for a wire value, `None` if unknown.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Converged),
            1 => Some(Self::Anytime),
            2 => Some(Self::FallbackShifted),
            3 => Some(Self::Failed),
            4 => Some(Self::Terminal),
            _ => None,
        }
    }

    /// Number of statuses (the length of per-status counters).
    pub const COUNT: usize = 5;

    /// Every status, in wire order.
    pub const ALL: [Self; Self::COUNT] = [Self::Converged, Self::Anytime, Self::FallbackShifted, Self::Failed, Self::Terminal];

    /// The message constant's name (`CONVERGED`, ...), for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Converged => "CONVERGED",
            Self::Anytime => "ANYTIME",
            Self::FallbackShifted => "FALLBACK_SHIFTED",
            Self::Failed => "FAILED",
            Self::Terminal => "TERMINAL",
        }
    }

    /// The cycle waited on the policy (CONVERGED, ANYTIME, or a deadline FALLBACK_SHIFTED): its
    /// solve time is a refinement's latency.
    pub fn is_refined(self) -> bool {
        matches!(self, Self::Converged | Self::Anytime | Self::FallbackShifted)
    }
}

/// A control sequence over the horizon answering the state at `stamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Time of the state answered [s] (ROS time; the message header stamp).
    pub stamp: f64,
    /// Frame of the state (message header frame_id).
    pub frame_id: String,
    /// Step dt [s].
    pub dt: f64,
    /// Controls `[N, m]`, problem units.
    pub u: DMatrix<f64>,
    /// Predicted states `[N+1, n]`, problem units.
    pub x: DMatrix<f64>,
    /// Predicted cost J.
    pub cost: f64,
    /// How it was obtained.
    pub status: PlanStatus,
    /// Refinement iterations completed.
    pub iterations: u32,
    /// Wall time spent [ms].
    pub solve_time_ms: f64,
}

/// Index of the control in force `elapsed` [s] after the start of `len` controls held for `dt`
/// [s] each (zero-order hold), clamped to the plan: before it the first, after it (or for a
/// non-finite time) the last or first.
pub fn zoh_index(elapsed: f64, dt: f64, len: usize) -> usize {
    let k = (elapsed / dt).floor();
    (if k.is_finite() { k.max(0.0) as usize } else { 0 }).min(len.saturating_sub(1))
}

/// The command `cmd` (length m) held over `n` steps: `[n, m]`.
pub fn hold(cmd: &DVector<f64>, n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n, cmd.len(), |_, j| cmd[j])
}

impl Plan {
    /// Index of the control in force at time `t` [s] ([`zoh_index`] from `stamp`).
    pub fn index_at(&self, t: f64) -> usize {
        zoh_index(t - self.stamp, self.dt, self.u.nrows())
    }

    /// The first control `u_0` (length m), the command to apply now.
    pub fn first_control(&self) -> DVector<f64> {
        self.u.row(0).transpose()
    }

    /// Time-weighted mean of the controls over `[0, hold]` [s] from the plan's stamp (length m):
    /// the zero-order-hold command with the plan's impulse over that window. `hold <= dt` (or
    /// not finite) gives `u_0`; a `hold` beyond the horizon averages the whole plan.
    pub fn mean_control(&self, hold: f64) -> DVector<f64> {
        if self.u.nrows() == 0 {
            return DVector::zeros(self.u.ncols());
        }
        if !(hold.is_finite() && self.dt > 0.0 && hold > self.dt) {
            return self.first_control();
        }
        let mut acc = DVector::zeros(self.u.ncols());
        let mut covered = 0.0;
        for k in 0..self.u.nrows() {
            let w = (hold - covered).min(self.dt);
            if w <= 0.0 {
                break;
            }
            acc += self.u.row(k).transpose() * w;
            covered += w;
        }
        acc / covered
    }
}
