//! The fixed-horizon mission (Van der Pol, the double integrator): a receding horizon of constant
//! length `t_go = N dt`, aim = the goal's target, always [`Phase::Refine`], safe command `u = 0`.
//! Their optimum puts the terminal state in the cost (no terminal equality to correct), so
//! `finish` is the cost refinement: at most `controller.cost_refinement_steps`
//! Levenberg-Marquardt steps on the quadratic cost, none started after the deadline
//! ([`crate::problems::cost_gauss_newton_refine`]; 0 steps = the identity).

use std::time::Instant;

use nalgebra::{DMatrix, DVector};

use super::{check_finite, check_goal_t_go, Finished, Mission, Phase};
use crate::config::{ControllerConfig, ProblemConfig};
use crate::control::io::{GoalInput, Rejected};
use crate::error::ConfigError;
use crate::plan::Plan;
use crate::problems::Problem;

/// See the module docs.
#[derive(Debug)]
pub struct FixedHorizonMission {
    problem: Box<dyn Problem>,
    /// `controller.cost_refinement_steps`.
    refine_steps: usize,
}

impl FixedHorizonMission {
    /// The mission for `problem` with the controller settings `cfg` (its
    /// `cost_refinement_steps`).
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid problem config.
    pub fn new(problem: &ProblemConfig, cfg: &ControllerConfig) -> Result<Self, ConfigError> {
        Ok(Self { problem: problem.build()?, refine_steps: cfg.cost_refinement_steps })
    }
}

impl Mission for FixedHorizonMission {
    fn set_config(&mut self, cfg: &ControllerConfig) {
        self.refine_steps = cfg.cost_refinement_steps;
    }

    fn check_goal(&self, goal: &GoalInput) -> Result<DVector<f64>, Rejected> {
        check_finite("goal.x_target", &goal.x_target)?;
        check_goal_t_go(goal.t_go)?;
        Ok(DVector::from_column_slice(&goal.x_target))
    }

    fn start_goal(&mut self, _goal: &GoalInput) {}

    fn check_state(&self, _x: &DVector<f64>, _x_target: &DVector<f64>) -> Result<(), Rejected> {
        Ok(())
    }

    fn aim(&self, x_target: &DVector<f64>) -> DVector<f64> {
        x_target.clone()
    }

    fn t_go(&mut self, _stamp: f64, _x: &DVector<f64>, _aim: &DVector<f64>) -> Result<f64, Rejected> {
        Ok(self.problem.default_t_go())
    }

    fn phase(&self, _t_go: f64) -> Result<Phase, Rejected> {
        Ok(Phase::Refine)
    }

    fn final_descent(&self, _x: &DVector<f64>, _x_target: &DVector<f64>) -> (DMatrix<f64>, f64) {
        let (n, m) = (self.problem.horizon(), self.problem.control_dim());
        (DMatrix::zeros(n, m), self.problem.default_t_go())
    }

    fn finish(
        &mut self,
        _stamp: f64,
        x: &DVector<f64>,
        aim: &DVector<f64>,
        t_go: f64,
        u: DMatrix<f64>,
        deadline: Instant,
        _replan: &mut super::Replan<'_>,
    ) -> Finished {
        if self.refine_steps == 0 || self.problem.quadratic_cost().is_none() {
            return Finished { u, t_go, retimed_s: None, correction_steps: 0 };
        }
        let dt = t_go / u.nrows().max(1) as f64;
        // a margin for the rollout and the publication after the finish
        let until = deadline.checked_sub(std::time::Duration::from_millis(2)).unwrap_or(deadline);
        match crate::problems::cost_gauss_newton_refine(self.problem.as_ref(), x, &u, dt, aim, self.refine_steps, Some(until)) {
            Ok((refined, steps)) => Finished { u: refined, t_go, retimed_s: None, correction_steps: steps },
            Err(e) => {
                log::warn!("cost refinement skipped: {e}");
                Finished { u, t_go, retimed_s: None, correction_steps: 0 }
            }
        }
    }

    fn safe_command(&self, _x: Option<&DVector<f64>>, _x_target: Option<&DVector<f64>>, _last: Option<&Plan>, _stamp: f64, _why: &Rejected) -> DVector<f64> {
        DVector::zeros(self.problem.control_dim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProblemKind;

    fn mission() -> FixedHorizonMission {
        FixedHorizonMission::new(&ProblemConfig::new(ProblemKind::Vanderpol), &ControllerConfig::default()).unwrap()
    }

    #[test]
    fn horizon_is_fixed_and_finish_without_refinement_is_the_identity() {
        let mut m = mission();
        m.set_config(&ControllerConfig { cost_refinement_steps: 0, ..Default::default() });
        let x = DVector::from_vec(vec![1.0, -0.5]);
        let aim = m.check_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![0.0, 0.0], t_go: 0.0 }).unwrap();
        assert_eq!(m.aim(&aim), aim);
        let t0 = m.t_go(10.0, &x, &aim).unwrap();
        let t1 = m.t_go(1e6, &x, &aim).unwrap();
        assert_eq!((t0, t1), (5.0, 5.0), "Van der Pol: N dt = 100 x 0.05 s at every stamp");
        assert_eq!(m.phase(-1.0).unwrap(), Phase::Refine);
        let u = DMatrix::from_fn(100, 1, |k, _| (k as f64).sin());
        let f = m.finish(10.0, &x, &aim, t0, u.clone(), Instant::now(), &mut |_| None);
        assert_eq!((f.u, f.t_go, f.retimed_s, f.correction_steps), (u, t0, None, 0));
        assert_eq!(m.safe_command(Some(&x), Some(&aim), None, 0.0, &Rejected::NoGoal), DVector::zeros(1));
    }

    #[test]
    fn finish_refines_the_cost_within_the_deadline() {
        let mut m = mission();
        let p = ProblemConfig::new(ProblemKind::Vanderpol).build().unwrap();
        let (x, aim) = (DVector::from_vec(vec![1.5, -1.0]), DVector::zeros(2));
        let t_go = m.t_go(0.0, &x, &aim).unwrap();
        let dt = t_go / 100.0;
        let u = DMatrix::zeros(100, 1);
        let j = |u: &DMatrix<f64>| p.cost(&p.rollout(&x, u, dt).unwrap(), u, &aim, dt);
        let f = m.finish(0.0, &x, &aim, t_go, u.clone(), Instant::now() + std::time::Duration::from_secs(5), &mut |_| None);
        assert!(f.correction_steps >= 1 && j(&f.u) < 0.9 * j(&u), "J {} -> {} in {} steps", j(&u), j(&f.u), f.correction_steps);
        assert!(f.u.iter().all(|v| v.abs() <= 2.0 + 1e-12), "inside the box |u| <= 2");
        // a deadline already past: nothing starts, the candidate is published as it is
        let late = m.finish(0.0, &x, &aim, t_go, u.clone(), Instant::now(), &mut |_| None);
        assert_eq!((late.u, late.correction_steps), (u, 0));
    }

    #[test]
    fn bad_goals_are_refused_with_the_entry() {
        let m = mission();
        let e = m.check_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![0.0, f64::NAN], t_go: 0.0 }).unwrap_err();
        assert!(matches!(e, Rejected::NonFinite { what: "goal.x_target", index: 1, .. }), "{e}");
        let e = m.check_goal(&GoalInput { frame_id: String::new(), stamp: 0.0, x_target: vec![0.0, 0.0], t_go: 2e4 }).unwrap_err();
        assert!(matches!(e, Rejected::OutOfRange { what: "goal.t_go", .. }), "{e}");
    }
}
