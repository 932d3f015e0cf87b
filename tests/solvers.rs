//! Capability tests of the optimal-control solvers (issue: optimal demonstrations). No DDS.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trc_control::problems::{DescentParams, DoubleIntegrator, DoubleIntegratorParams, PoweredDescent, Problem, VanDerPol, VanDerPolParams};
use trc_control::solvers::lcvx::{LcvxSolver, TfSearch};
use trc_control::solvers::lqr::DoubleIntegratorSolver;
use trc_control::solvers::scp::ScpSolver;
use trc_control::solvers::{Instance, OcpSolver, SolveError, SolverSettings};

fn di_solver() -> DoubleIntegratorSolver {
    DoubleIntegratorSolver::new(DoubleIntegrator::new(DoubleIntegratorParams::default()).unwrap(), SolverSettings::default()).unwrap()
}

fn inst(x0: &[f64], xt: &[f64]) -> Instance {
    Instance { x0: DVector::from_row_slice(x0), x_target: DVector::from_row_slice(xt), t_go: None }
}

/// Riccati LQR equals the independent batch least-squares solution (normal equations of the
/// condensed problem, H U = -f) to 1e-8 relative.
#[test]
fn lqr_equals_batch_least_squares() {
    let s = di_solver();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..20 {
        let i = inst(&[rng.gen_range(-3.0..3.0), rng.gen_range(-3.0..3.0)], &[rng.gen_range(-1.0..1.0), 0.0]);
        let lqr = s.lqr(&i).unwrap();
        let c = s.condensed(&i);
        let u_ls = c.h.clone().cholesky().expect("H > 0").solve(&(-&c.f));
        let u_lqr = DVector::from_column_slice(lqr.u.as_slice());
        let rel = (&u_lqr - &u_ls).norm() / u_ls.norm().max(1e-12);
        assert!(rel < 1e-8, "LQR vs batch LS: relative difference {rel:e}");
    }
}

/// Where no bound is active the box QP (Clarabel) equals LQR; where bounds bind it respects them,
/// costs no less than LQR, and satisfies the KKT sign conditions.
#[test]
fn box_qp_equals_lqr_where_bounds_are_inactive() {
    let mut s = di_solver();
    let p = DoubleIntegrator::new(DoubleIntegratorParams::default()).unwrap();
    // small offsets: |u_lqr| < u_max
    for x0 in [[0.3, -0.1], [-0.2, 0.25], [0.05, 0.0]] {
        let i = inst(&x0, &[0.0, 0.0]);
        let lqr = s.lqr(&i).unwrap();
        assert!(lqr.u.amax() < 1.0, "test instance must keep the bound inactive");
        let qp = s.solve(&i).unwrap();
        let rel = (&qp.u - &lqr.u).norm() / lqr.u.norm();
        assert!(rel < 1e-6, "QP vs LQR (inactive bounds) differ by {rel:e}");
        let j_lqr = p.cost(&lqr.x, &lqr.u, &i.x_target, 0.1);
        assert!(((qp.cost - j_lqr) / j_lqr).abs() < 1e-9, "cost {} vs {}", qp.cost, j_lqr);
    }
    // large offset: bounds active
    let i = inst(&[4.0, 2.0], &[0.0, 0.0]);
    let lqr = s.lqr(&i).unwrap();
    assert!(lqr.u.amax() > 1.0);
    let qp = s.solve(&i).unwrap();
    assert!(qp.u.amax() <= 1.0 + 1e-7, "QP violates |u| <= 1: {}", qp.u.amax());
    assert!(qp.cost >= p.cost(&lqr.x, &lqr.u, &i.x_target, 0.1));
    // KKT: gradient g = 2(HU + f); at an upper bound g <= 0, at a lower bound g >= 0, else g = 0
    // (an interior-point solution sits within ~1e-6 of an active bound)
    let c = s.condensed(&i);
    let u = DVector::from_column_slice(qp.u.as_slice());
    let g = (&c.h * &u + &c.f) * 2.0;
    let scale = g.amax().max(1.0);
    for k in 0..u.len() {
        if u[k] > 1.0 - 1e-4 {
            assert!(g[k] <= 1e-5 * scale, "k={k}: at upper bound with gradient {}", g[k]);
        } else if u[k] < -1.0 + 1e-4 {
            assert!(g[k] >= -1e-5 * scale, "k={k}: at lower bound with gradient {}", g[k]);
        } else {
            assert!(g[k].abs() <= 1e-5 * scale, "k={k}: interior (u = {}) with gradient {}", u[k], g[k]);
        }
    }
    // workspace reuse gives the same answer as a fresh solver
    let fresh = di_solver().solve(&i).unwrap();
    assert!((&fresh.u - &qp.u).amax() < 1e-5, "warm workspace and fresh solver disagree beyond solver tolerance");
}

fn vdp_solver(params: VanDerPolParams) -> ScpSolver {
    ScpSolver::new(VanDerPol::new(params).unwrap(), SolverSettings::default(), ScpSolver::DEFAULT_KKT_TOL).unwrap()
}

/// SCP returns a first-order optimal point: projected gradient below tolerance, bounds held, and
/// no random feasible perturbation (of several sizes) lowers the cost.
#[test]
fn scp_solution_is_first_order_optimal_and_locally_minimal() {
    let mut s = vdp_solver(VanDerPolParams::default());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for x0 in [[1.5, -1.0], [-2.0, 2.0], [0.5, 0.5]] {
        let i = inst(&x0, &[0.0, 0.0]);
        let sol = s.solve(&i).unwrap_or_else(|e| panic!("x0 = {x0:?}: {e}"));
        let u = DVector::from_column_slice(sol.u.as_slice());
        assert!(u.amax() <= 2.0 + 1e-9, "bounds");
        let (j, g) = s.cost_and_gradient(&i, &u, sol.dt).unwrap();
        assert!((j - sol.cost).abs() < 1e-9 * j);
        let pg = DVector::from_fn(u.len(), |k, _| u[k] - (u[k] - g[k]).clamp(-2.0, 2.0));
        assert!(pg.amax() <= 1e-6 * (1.0 + j), "x0 = {x0:?}: projected gradient {:e}", pg.amax());
        let p = s.problem();
        for scale in [1e-3, 1e-2, 1e-1] {
            for _ in 0..20 {
                let d = DVector::from_fn(u.len(), |_, _| rng.gen_range(-scale..scale));
                let up = (&u + d).map(|v| v.clamp(-2.0, 2.0));
                let um = DMatrix::from_column_slice(u.len(), 1, up.as_slice());
                let xp = p.rollout(&i.x0, &um, sol.dt).unwrap();
                let jp = p.cost(&xp, &um, &i.x_target, sol.dt);
                assert!(jp >= j - 1e-9 * j, "x0 = {x0:?}: perturbation of size {scale} lowered the cost {j} -> {jp}");
            }
        }
    }
}

/// Reproduces a published Van der Pol optimum: Balsa-Canto, Banga, Alonso & Vassiliadis (2002),
/// "Restricted second order information for the solution of optimal control problems using
/// control vector parameterization", case study 6.1 (after Vassiliadis 1993; TOMLAB/PROPT example
/// "Van der Pol", J* = 2.867259538 with SNOPT on 60 collocation points):
/// min int_0^5 (x1^2 + x2^2 + u^2) dt, x1' = (1 - x2^2) x1 - x2 + u, x2' = x1, x(0) = (0, 1),
/// -0.3 <= u <= 1. In our convention the states are swapped (our x1 = their x2, the position), so
/// x0 = (1, 0). Discretisation: N piecewise-constant controls, RK4, the state integral by the
/// trapezoid rule (Q = dt I, R = dt, Q_f = dt/2 I, minus the constant dt/2 |x0|^2). The ZOH
/// control parameterisation converges to J* from above at O(dt): at N = 200 within 0.2%, and
/// closer than at N = 100.
#[test]
fn scp_reproduces_the_published_van_der_pol_optimum() {
    let published = 2.867_259_538;
    let solve = |n: usize| {
        let dt = 5.0 / n as f64;
        let params = VanDerPolParams { mu: 1.0, u_max: 1.0, u_min: Some(-0.3), dt, horizon: n, q: [dt, dt], r: dt, q_f_scale: 0.5, success_radius: 0.2 };
        let mut s = vdp_solver(params);
        let sol = s.solve(&inst(&[1.0, 0.0], &[0.0, 0.0])).unwrap();
        assert!(sol.u.min() >= -0.3 - 1e-9 && sol.u.max() <= 1.0 + 1e-9);
        sol.cost - 0.5 * dt * 1.0
    };
    let j100 = solve(100);
    let j200 = solve(200);
    eprintln!("Van der Pol (Balsa-Canto et al. 2002, case 6.1): J(N=100) = {j100:.6}, J(N=200) = {j200:.6}, published {published}");
    assert!((j200 - published).abs() / published < 2e-3, "N=200: {j200} vs published {published}");
    assert!((j200 - published).abs() < (j100 - published).abs(), "refinement must approach the optimum");
}

/// The SCPToolbox LCvx example (UW-ACL SCPToolbox.jl, examples/rocket_landing, after Acikmese &
/// Ploen 2007 and Malyuta et al. 2022): z up, g = (0, 0, -3.7114), Mars rotation at 30 deg
/// latitude, m_wet 1905 kg, m_dry 1505 kg, six 3100 N engines canted 27 deg at 0.3..0.8 throttle,
/// alpha = 1 / (Isp g0 cos 27 deg) (mass flow of the canted engines), pointing 40 deg, glide slope
/// 4 deg above the horizontal, v_max 500 km/h, r0 = (2000, 0, 1500) m, v0 = (80, 30, -75) m/s.
/// Their golden-section search (dt = 1 s grid) reports t_f* = 75 s. We use N = 50 nodes over t_f
/// (dt ~ 1.5 s), so agreement is to the discretisation: |t_f* - 75| < 2 s.
fn scptoolbox_example() -> (DescentParams, Instance) {
    let w = 2.0 * std::f64::consts::PI / (24.6229 * 3600.0);
    let lat = 30f64.to_radians();
    let params = DescentParams {
        planet_rotation: [w * lat.cos(), 0.0, w * lat.sin()],
        g0: 9.807,
        isp: 225.0 * 27f64.to_radians().cos(),
        pointing_max_deg: 40.0,
        glide_slope_deg: 4.0,
        v_max: 500.0 / 3.6,
        ..DescentParams::default()
    };
    let x0 = DVector::from_row_slice(&[2000.0, 0.0, 1500.0, 80.0, 30.0, -75.0, 1905.0]);
    let mut xt = DVector::zeros(7);
    xt[6] = 1505.0;
    (params, Instance { x0, x_target: xt, t_go: None })
}

#[test]
fn lcvx_reproduces_the_scptoolbox_example() {
    let (params, i) = scptoolbox_example();
    let p = PoweredDescent::new(params).unwrap();
    let mut s = LcvxSolver::new(p.clone(), SolverSettings::default(), TfSearch::default()).unwrap();
    let (sol, rep) = s.solve_detailed(&i).unwrap();
    let fuel = i.x0[6] - sol.x_model[(50, 6)];
    eprintln!(
        "LCvx SCPToolbox example: t_f* = {:.3} s, fuel {:.2} kg, lossless gap {:.2e}, resim error {:.3} m / {:.4} m/s, {} SOCPs, {:?}",
        sol.t_go, fuel, rep.lossless_gap, rep.resim_position_error, rep.resim_velocity_error, sol.subproblems, sol.solve_time
    );
    for (t, f) in &rep.fuel_vs_tf {
        eprintln!("  t_f {t:8.3} s  fuel {}", f.map_or("infeasible".into(), |f| format!("{f:.3} kg")));
    }
    assert!((sol.t_go - 75.0).abs() < 2.0, "t_f* = {}", sol.t_go);
    assert!(rep.lossless_gap < 1e-5, "relaxation not tight: {:e}", rep.lossless_gap);
    // constraints of the solver's model hold to tolerance; the thrust it returns respects the bounds
    let viol = p.check_constraints(&sol.x_model, &sol.u, &i.x_target);
    assert!(viol.is_empty(), "{viol:?}");
    // fuel(t_f) is minimal at t_f*: every evaluated neighbour uses at least as much
    for (t, f) in rep.fuel_vs_tf.iter() {
        if let Some(f) = f {
            assert!(*f >= fuel - 1e-6, "t_f = {t} uses less fuel ({f}) than the optimum ({fuel})");
        }
    }
}

#[test]
fn lcvx_default_vehicle_lands_and_is_lossless() {
    let p = PoweredDescent::new(DescentParams::default()).unwrap();
    let mut s = LcvxSolver::new(p.clone(), SolverSettings::default(), TfSearch::default()).unwrap();
    let i = Instance { x0: DVector::from_row_slice(&[400.0, -200.0, 1500.0, -10.0, 5.0, -50.0, 1905.0]), x_target: p.default_target(), t_go: None };
    let (sol, rep) = s.solve_detailed(&i).unwrap();
    eprintln!(
        "default vehicle: t_f* {:.2} s, fuel {:.2} kg, gap {:.1e}, resim {:.3} m {:.4} m/s",
        sol.t_go,
        1905.0 - sol.x_model[(50, 6)],
        rep.lossless_gap,
        rep.resim_position_error,
        rep.resim_velocity_error
    );
    assert!(rep.lossless_gap < 1e-5);
    assert!(p.check_constraints(&sol.x_model, &sol.u, &i.x_target).is_empty());
    // fixed t_f reuses the workspace and gives the same fuel at the same t_f
    let again = s.solve(&Instance { t_go: Some(sol.t_go), ..i.clone() }).unwrap();
    assert!((again.cost - sol.cost).abs() < 1e-6 * sol.cost);
}

#[test]
fn lcvx_reports_infeasible_instances_with_a_reason() {
    let p = PoweredDescent::new(DescentParams::default()).unwrap();
    let mut s = LcvxSolver::new(p.clone(), SolverSettings::default(), TfSearch::default()).unwrap();
    let t = p.default_target();
    // too little propellant for the speed
    let low_fuel = Instance { x0: DVector::from_row_slice(&[0.0, 0.0, 2000.0, 0.0, 0.0, -120.0, 1520.0]), x_target: t.clone(), t_go: None };
    match s.solve(&low_fuel) {
        Err(SolveError::Infeasible { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected infeasible, got {other:?}"),
    }
    // below the glide slope
    let low = Instance { x0: DVector::from_row_slice(&[3000.0, 0.0, 100.0, 0.0, 0.0, -10.0, 1905.0]), x_target: t.clone(), t_go: None };
    match s.solve(&low) {
        Err(SolveError::Infeasible { reason }) => assert!(reason.contains("glide slope"), "{reason}"),
        other => panic!("expected infeasible, got {other:?}"),
    }
    // a fixed t_f far too short
    let short = Instance { x0: DVector::from_row_slice(&[500.0, 0.0, 2000.0, 0.0, 0.0, -60.0, 1905.0]), x_target: t, t_go: Some(5.0) };
    assert!(matches!(s.solve(&short), Err(SolveError::Infeasible { .. })));
}
