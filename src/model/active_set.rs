//! The batched active set of the terminal Gauss-Newton step (tensor form; the per-sample f64 form
//! is [`super::newton`], the controller's is [`crate::control::correction`]).
//!
//! A Gauss-Newton step on the terminal error is recomputed over a few passes: the control bounds
//! the tentative step pushes against or crosses are *held*, and the next pass removes their
//! directions from the Jacobian's columns (docs/method.md "Sensitivity features"). Everything that
//! depends only on the current controls `u` (thrust norms, tilts, the outward normals in
//! normalised coordinates) is computed once per step in [`HeldBounds::new`]; a pass then costs a
//! few masked products. On an accelerator every tensor op is a kernel launch (docs/gpu.md), so
//! this keeps the step's launches down; the values are those of computing everything per pass.

use tch::{Kind, Tensor};

use crate::problems::ControlConstraint;

/// Relative band within which a control counts as at its bound (`1e-4` of the bound or span;
/// the rule of [`crate::control::correction`]).
const REL: f64 = 1e-4;

/// The bounds' geometry at the controls `u` `[B, N, m]` (physical, f64) of one Gauss-Newton step.
#[derive(Debug)]
pub struct HeldBounds {
    /// `[B, N, m]` controls the geometry was computed at (physical, f64).
    u: Tensor,
    geometry: Geometry,
}

#[derive(Debug)]
enum Geometry {
    /// Box bounds `[1, 1, m]` and the band `[1, 1, m]` within which a component is at a bound.
    Box { lo: Tensor, hi: Tensor, span: Tensor },
    /// Thrust annulus and pointing cone.
    Thrust {
        rho_min: f64,
        rho_max: f64,
        max_tilt: f64,
        /// `|T|` and the tilt from +z of `u`, `[B, N, 1]` each.
        norm: Tensor,
        tilt: Tensor,
        /// `u` at rho_max, at rho_min, at the cone's edge (within [`REL`] / 1e-4 rad), `[B, N, 1]`.
        at_max: Tensor,
        at_min: Tensor,
        at_edge: Tensor,
        /// Unit directions removed from the columns (normalised coordinates, `[B, N, m]`): the
        /// radial one `d1`; the cone's, made orthogonal to `d1` (`d2_orth`, where the radial
        /// bound is held too) or alone (`d2_alone`).
        d1: Tensor,
        d2_orth: Tensor,
        d2_alone: Tensor,
    },
}

/// `v / |v|` over the last dimension of `[B, N, m]` (a zero vector stays zero).
fn unit(v: &Tensor) -> Tensor {
    v / norm_of(v).clamp_min(1e-12)
}

/// `|t|` over the last dimension of `[B, N, m]`, `[B, N, 1]`.
fn norm_of(t: &Tensor) -> Tensor {
    t.square().sum_dim_intlist(&[2i64][..], true, Kind::Double).sqrt()
}

/// The angle from +z of thrusts `[B, N, 3]`, `[B, N, 1]`, with their norms `norm` `[B, N, 1]`.
fn tilt_of(t: &Tensor, norm: &Tensor) -> Tensor {
    (t.narrow(2, 2, 1) / norm.clamp_min(1e-12)).clamp(-1.0, 1.0).acos()
}

impl HeldBounds {
    /// The geometry of `constraint` at `u` `[B, N, m]` (physical, f64), with the control scale
    /// `sigma` `[m]` of the normalised coordinates the Jacobian's columns are in
    /// ([`super::Normalizer`]'s `u_std`).
    #[must_use]
    pub fn new(constraint: &ControlConstraint, u: &Tensor, sigma: &Tensor) -> Self {
        let m = u.size()[2];
        let geometry = match constraint {
            ControlConstraint::Box { lower, upper } => {
                let lo = crate::tensor::const_vec(lower.as_slice(), u).view([1, 1, m]);
                let hi = crate::tensor::const_vec(upper.as_slice(), u).view([1, 1, m]);
                let span = (&hi - &lo).abs().clamp_min(1e-12) * REL;
                Geometry::Box { lo, hi, span }
            }
            ControlConstraint::ThrustAnnulusCone { rho_min, rho_max, max_tilt } => {
                let norm = norm_of(u);
                let tilt = tilt_of(u, &norm);
                // outward normals, physical: radial T / |T|; the cone's, the direction of growing
                // tilt in the plane of T and +z: (a cos(tilt), -sin(tilt)), a the horizontal unit
                let dir = u / norm.clamp_min(1e-12);
                let h = dir.narrow(2, 0, 2);
                let hn = norm_of(&h);
                let a = &h / hn.clamp_min(1e-12);
                let cz = dir.narrow(2, 2, 1);
                let n_cone = Tensor::cat(&[&a * &cz, -hn], 2);
                // in normalised coordinates a physical normal n becomes sigma (.) n; the cone's
                // made orthogonal to the radial one (Gram-Schmidt) where both are held
                let sigma = sigma.to_kind(Kind::Double).view([1, 1, m]);
                let d1 = unit(&(&dir * &sigma));
                let d2 = &n_cone * &sigma;
                let d2_orth = unit(&(&d2 - (&d2 * &d1).sum_dim_intlist(&[2i64][..], true, Kind::Double) * &d1));
                let d2_alone = unit(&d2);
                Geometry::Thrust {
                    rho_min: *rho_min,
                    rho_max: *rho_max,
                    max_tilt: *max_tilt,
                    at_max: norm.ge(rho_max * (1.0 - REL)),
                    at_min: norm.le(rho_min * (1.0 + REL)),
                    at_edge: tilt.ge(max_tilt - 1e-4),
                    norm,
                    tilt,
                    d1,
                    d2_orth,
                    d2_alone,
                }
            }
        };
        Self { u: u.shallow_clone(), geometry }
    }

    /// No bound held yet: `[B, N, 2]` for the thrust (radial, cone), `[B, N, m]` for a box.
    pub fn none_held(&self) -> Tensor {
        let s = self.u.size();
        let cols = match self.geometry {
            Geometry::Box { .. } => s[2],
            Geometry::Thrust { .. } => 2,
        };
        Tensor::zeros([s[0], s[1], cols], (Kind::Bool, self.u.device()))
    }

    /// The bounds a step from `u` to `probe` `[B, N, m]` (physical, f64) pushes against or
    /// crosses, added to `held` ([`HeldBounds::none_held`]'s shape): a thrust at rho_max growing
    /// or at rho_min shrinking, beyond either; on the pointing cone tilting further, or beyond it;
    /// a box component at a bound moving out, or beyond it.
    pub fn grow(&self, held: &Tensor, probe: &Tensor) -> Tensor {
        let u = &self.u;
        match &self.geometry {
            Geometry::Box { lo, hi, span } => {
                let out_hi = u.ge_tensor(&(hi - span)).logical_and(&probe.gt_tensor(u)).logical_or(&probe.gt_tensor(hi));
                let out_lo = u.le_tensor(&(lo + span)).logical_and(&probe.lt_tensor(u)).logical_or(&probe.lt_tensor(lo));
                held.logical_or(&out_hi).logical_or(&out_lo)
            }
            Geometry::Thrust { rho_min, rho_max, max_tilt, norm, tilt, at_max, at_min, at_edge, .. } => {
                let np = norm_of(probe);
                let radial = at_max.logical_and(&np.gt_tensor(norm)).logical_or(&at_min.logical_and(&np.lt_tensor(norm)));
                let radial = radial.logical_or(&np.gt(*rho_max)).logical_or(&np.lt(*rho_min));
                let tp = tilt_of(probe, &np);
                let cone = at_edge.logical_and(&tp.gt_tensor(tilt)).logical_or(&tp.gt(*max_tilt));
                held.logical_or(&Tensor::cat(&[radial, cone], 2))
            }
        }
    }

    /// Restricts the Jacobian `G` `[B, c, N m]` (normalised controls, f64) to moves along the
    /// `held` bounds: a held thrust magnitude loses its radial direction, a held pointing cone
    /// the direction of growing tilt, a held box component its column. The projection after each
    /// step would clip those directions anyway, so a step that relied on them would fall short.
    /// The thrust's projection runs in place on `jac`'s storage (the passes of one step project
    /// the already projected Jacobian further); the result is a view of it.
    pub fn tangent(&self, jac: &Tensor, held: &Tensor) -> Tensor {
        let (b, c) = (jac.size()[0], jac.size()[1]);
        let (n, m) = (self.u.size()[1], self.u.size()[2]);
        let g = jac.view([b, c, n, m]);
        let out = match &self.geometry {
            Geometry::Box { .. } => g * held.logical_not().to_kind(Kind::Double).unsqueeze(1),
            Geometry::Thrust { d1, d2_orth, d2_alone, .. } => {
                let radial = held.narrow(2, 0, 1);
                let d1 = d1 * radial.to_kind(Kind::Double);
                let d2 = d2_orth.where_self(&radial, d2_alone) * held.narrow(2, 1, 1).to_kind(Kind::Double);
                let mut g = g;
                for d in [d1, d2] {
                    let d = d.unsqueeze(1); // [B, 1, N, m]
                    let gd = (&g * &d).sum_dim_intlist(&[3i64][..], true, Kind::Double); // [B, c, N, 1]
                    g -= gd * d;
                }
                g
            }
        };
        out.view([b, c, n * m])
    }
}
