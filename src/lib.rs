//! # trc_control
//!
//! Tiny Recursive Control (TRC; Jain & Linares, arXiv 2512.16824, 2025) as a receding-horizon
//! ROS 2 controller. The core (this library) is ROS-free; the r2r node is a thin layer over it.
//!
//! ## The optimal control problem
//! Find controls `u_0 .. u_{N-1}` (`[N, m]`) that take the state `x` (length n) from `x_0` to
//! `x_target` in time-to-go `t_go` (step `dt = t_go / N`), minimising a cost `J`, subject to the
//! dynamics `x' = f(x, u)` (RK4, zero-order hold) and control/path constraints.
//!
//! ## Module map
//! - [`problems`]: the [`problems::Problem`] trait; double integrator, Van der Pol, 3-DoF powered
//!   descent, each in f64 (nalgebra) and batched tch forms.
//! - [`bag`]: rosbag2 MCAP bags (read, write, CDR messages) and the deterministic replay of a
//!   recorded flight through the controller (`trc replay`).
//! - [`baseline`]: classical feedback baselines (`trc baseline`).
//! - [`solvers`]: LQR / box QP, SCP (Van der Pol), LCvx (descent) on Clarabel: the optimal demonstrations.
//! - [`data`]: initial-state distributions, parallel demonstration generation, the dataset file format.
//! - [`model`]: the TRC network (tch): encoders, shared reasoning module, projection, checkpoints.
//! - [`train`]: training with process supervision, evaluation.
//! - [`closed_loop`]: episodes, their accounting (shared with `trc_sim`), the lockstep loop.
//! - [`control`]: the receding-horizon controller: one generic cycle (guards, t_go, candidate,
//!   one finish), mission plug-ins (descent's gate, terminal phase, correction and retiming),
//!   policies, the inference thread.
//! - [`config`]: YAML configuration shared by the CLI and the node, validated on load.
//! - [`launch`]: the project's launcher spec, equivalent to `launch/*.launch.py`.
//! - [`error`]: typed errors per layer.
//! - [`plot`]: PNG figures (training curves, evaluation, trajectories) for the long jobs.
//! - [`plant`]: the `Plant` boundary and the simulated vehicle (true dynamics, disturbances,
//!   touchdown) behind `trc_sim` and the lockstep loop.
//! - [`plan`]: the controller's answer (control sequence, prediction, status), ROS-free.
//! - [`tensor`]: conversions between nalgebra and tch.
//! - `ros` (cargo feature `ros`, on by default): the ROS 2 adapter layer (messages, parameters,
//!   rosout; r2r), kept apart from the core.
//!
//! Layers, bottom to top, and the design: `docs/architecture.md`; the method: `docs/method.md`;
//! the problem data: `docs/problems.md`.

#![warn(missing_docs)]

pub mod bag;
pub mod baseline;
pub mod closed_loop;
pub mod config;
pub mod control;
pub mod data;
pub mod error;
pub mod launch;
pub mod model;
pub mod plan;
pub mod plant;
pub mod plot;
pub mod problems;
#[cfg(feature = "ros")]
pub mod ros;
pub mod scenario;
pub mod solvers;
pub mod tensor;
pub mod train;
