//! Control constraints applied to every TRC iterate (hard per-step satisfaction).
//!
//! - Box (Van der Pol, double integrator): clipping.
//! - Thrust annulus + pointing cone (descent): the exact Euclidean projection of
//!   [`crate::problems::PoweredDescent::project_thrust`], batched and differentiable almost
//!   everywhere: rotate onto the cap of half-angle theta in the thrust's azimuth if outside the
//!   cone, then set the magnitude to `clamp(T . d, rho1, rho2)`.

use tch::Tensor;

use crate::problems::ControlConstraint;

/// Projects controls `u` `[.., m]` (physical units) onto the admissible set.
pub fn project(u: &Tensor, c: &ControlConstraint) -> Tensor {
    match c {
        ControlConstraint::Box { lower, upper } => {
            let lo = crate::tensor::const_vec(lower.as_slice(), u);
            let hi = crate::tensor::const_vec(upper.as_slice(), u);
            u.clamp_tensor(Some(&lo), Some(&hi))
        }
        ControlConstraint::ThrustAnnulusCone { rho_min, rho_max, max_tilt } => project_thrust(u, *rho_min, *rho_max, *max_tilt),
    }
}

/// Batched exact projection of thrust `t` `[.., 3]` onto `{rho_min <= |T| <= rho_max, tilt <= max_tilt}`.
pub fn project_thrust(t: &Tensor, rho_min: f64, rho_max: f64, max_tilt: f64) -> Tensor {
    let eps = 1e-12;
    let tx = t.narrow(-1, 0, 1);
    let ty = t.narrow(-1, 1, 1);
    let tz = t.narrow(-1, 2, 1);
    let n = (t * t).sum_dim_intlist(&[-1i64][..], true, t.kind()).clamp_min(eps * eps).sqrt();
    let h = (&tx * &tx + &ty * &ty).clamp_min(eps * eps).sqrt();
    let (s, c) = max_tilt.sin_cos();
    // boundary direction in the thrust's azimuth (+x if the azimuth is undefined); the constant
    // entries are filled in place on the fresh quotients (one kernel each on an accelerator; a
    // `where` with a scalar branch would fill a device scalar first), the same values
    let no_az = h.le(1e-9);
    let mut ax = &tx / &h;
    let _ = ax.masked_fill_(&no_az, 1.0);
    let mut ay = &ty / &h;
    let _ = ay.masked_fill_(&no_az, 0.0);
    let d_cap = Tensor::cat(&[Tensor::cat(&[ax, ay], -1) * s, tz.full_like(c)], -1);
    let inside = tz.ge_tensor(&(&n * c)).logical_and(&n.gt(1e-9));
    let d_in = t / &n;
    let d = d_in.where_self(&inside, &d_cap);
    // zero thrust: +z
    let zero = n.le(1e-9);
    let up = Tensor::cat(&[t.narrow(-1, 0, 2).zeros_like(), tz.ones_like()], -1);
    let d = up.where_self(&zero, &d);
    let r = (t * &d).sum_dim_intlist(&[-1i64][..], true, t.kind()).clamp(rho_min, rho_max);
    d * r
}
