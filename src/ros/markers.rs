//! RViz / Foxglove view of the controller (`visualization_msgs/MarkerArray` on `plan_markers`):
//! the predicted trajectory, the landing site and the thrust command, in the plan's frame
//! (`landing_site` for trc_sim and the Gazebo world: origin at the pad, z up, metres). Descent
//! only (positions are x[0..3]); other problems publish nothing here.

use nalgebra::DVector;
use r2r::builtin_interfaces::msg::{Duration, Time};
use r2r::geometry_msgs::msg::Point;
use r2r::std_msgs::msg::{ColorRGBA, Header};
use r2r::visualization_msgs::msg::{Marker, MarkerArray};

use crate::plan::{Plan, PlanStatus};

/// Marker namespace (RViz shows it in the display's namespace list).
pub const NAMESPACE: &str = "trc_plan";
/// Marker ids: the predicted trajectory (LINE_STRIP).
pub const ID_TRAJECTORY: i32 = 0;
/// The landing site, the goal's target position (SPHERE, 2 m).
pub const ID_SITE: i32 = 1;
/// The thrust command from the current position (ARROW, 1 m per kN).
pub const ID_THRUST: i32 = 2;

fn color(r: f32, g: f32, b: f32) -> ColorRGBA {
    ColorRGBA { r, g, b, a: 1.0 }
}

fn point(v: &[f64]) -> Point {
    Point { x: v[0], y: v[1], z: v[2] }
}

/// The markers of one answer: `plan` (its `x` `[N+1, n]`, n >= 3, positions in columns 0..3 [m]),
/// the goal's target `site` (length >= 3, [m]) and the published command `u_cmd` (thrust [N],
/// length 3) from the plan's first state, stamped `stamp` in the plan's frame. The trajectory is
/// green while refined (CONVERGED, ANYTIME, TERMINAL), yellow for FALLBACK_SHIFTED and red for
/// FAILED. Markers last 1 s unless replaced (a silent node's view fades). Empty for n < 3 or a
/// plan without states.
pub fn plan_markers(plan: &Plan, site: Option<&DVector<f64>>, u_cmd: &DVector<f64>, stamp: Time) -> MarkerArray {
    let mut markers = Vec::new();
    if plan.x.ncols() < 3 || plan.x.nrows() == 0 {
        return MarkerArray { markers };
    }
    let header = Header { stamp, frame_id: plan.frame_id.clone() };
    let base = |id: i32, kind: i32| Marker {
        header: header.clone(),
        ns: NAMESPACE.into(),
        id,
        type_: kind,
        action: Marker::ADD as i32,
        lifetime: Duration { sec: 1, nanosec: 0 },
        ..Default::default()
    };
    let mut m = base(ID_TRAJECTORY, Marker::LINE_STRIP as i32);
    m.pose.orientation.w = 1.0;
    m.scale.x = 0.5;
    m.color = match plan.status {
        PlanStatus::FallbackShifted => color(1.0, 0.8, 0.0),
        PlanStatus::Failed => color(1.0, 0.1, 0.1),
        _ => color(0.1, 0.9, 0.2),
    };
    m.points = (0..plan.x.nrows()).map(|k| Point { x: plan.x[(k, 0)], y: plan.x[(k, 1)], z: plan.x[(k, 2)] }).collect();
    markers.push(m);
    if let Some(site) = site.filter(|s| s.len() >= 3) {
        let mut m = base(ID_SITE, Marker::SPHERE as i32);
        m.pose.position = point(site.as_slice());
        m.pose.orientation.w = 1.0;
        (m.scale.x, m.scale.y, m.scale.z) = (2.0, 2.0, 2.0);
        m.color = color(0.2, 0.4, 1.0);
        markers.push(m);
    }
    if u_cmd.len() >= 3 && u_cmd.iter().all(|v| v.is_finite()) {
        let mut m = base(ID_THRUST, Marker::ARROW as i32);
        let from = (0..3).map(|j| plan.x[(0, j)]).collect::<Vec<_>>();
        let to: Vec<f64> = (0..3).map(|j| from[j] + u_cmd[j] * 1e-3).collect();
        m.points = vec![point(&from), point(&to)];
        m.pose.orientation.w = 1.0;
        (m.scale.x, m.scale.y, m.scale.z) = (0.3, 0.6, 0.6);
        m.color = color(1.0, 0.5, 0.0);
        markers.push(m);
    }
    MarkerArray { markers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn a_descent_answer_gives_its_trajectory_site_and_thrust() {
        let plan = Plan {
            stamp: 10.0,
            frame_id: "landing_site".into(),
            dt: 0.5,
            u: DMatrix::zeros(2, 3),
            x: DMatrix::from_row_slice(3, 7, &[10.0, 5.0, 100.0, 0., 0., -5., 1800., 5.0, 2.0, 50.0, 0., 0., -3., 1790., 0.0, 0.0, 0.0, 0., 0., 0., 1780.]),
            cost: 0.0,
            status: PlanStatus::Converged,
            iterations: 3,
            solve_time_ms: 1.0,
        };
        let site = DVector::from_vec(vec![0.0, 0.0, 0.0, 0., 0., 0., 1505.]);
        let a = plan_markers(&plan, Some(&site), &DVector::from_vec(vec![0.0, 1000.0, 7000.0]), Time { sec: 10, nanosec: 0 });
        assert_eq!(a.markers.len(), 3);
        let traj = &a.markers[0];
        assert_eq!((traj.id, traj.type_, traj.header.frame_id.as_str()), (ID_TRAJECTORY, Marker::LINE_STRIP as i32, "landing_site"));
        assert_eq!(traj.points.len(), 3);
        assert_eq!((traj.points[0].x, traj.points[0].z), (10.0, 100.0));
        assert_eq!(a.markers[1].pose.position.z, 0.0);
        let arrow = &a.markers[2];
        assert_eq!((arrow.points[1].y, arrow.points[1].z), (5.0 + 1.0, 100.0 + 7.0), "1 m per kN from the plan's first position");
        // Van der Pol / double integrator states have no position: nothing
        let small = Plan { x: DMatrix::zeros(3, 2), ..plan };
        assert!(plan_markers(&small, None, &DVector::zeros(1), Time::default()).markers.is_empty());
    }
}
