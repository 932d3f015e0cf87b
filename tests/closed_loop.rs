//! The receding-horizon controller flying the shipped descent model against the plant in
//! lockstep (ROS-free, no DDS): it lands within the success criterion (touchdown < 1 m from the
//! site, < 0.5 m/s), through the touchdown gate, and only with the terminal correction (the raw
//! network misses by metres: the comparison keeps the correction honest).

use trc_control::closed_loop::EpisodeReport;
use trc_control::closed_loop::{episode_specs, fly};
use trc_control::config::DeviceChoice;
use trc_control::config::TrcConfig;
use trc_control::control::RecedingHorizon;

fn config() -> TrcConfig {
    let mut cfg = TrcConfig::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/config/descent.yaml")).unwrap();
    cfg.node.device = DeviceChoice::Cpu;
    cfg.node.warmup_passes = 1;
    // lockstep: the deadline only bounds the wait (unoptimised test builds are slower)
    cfg.controller.deadline_s = 1.0;
    cfg
}

fn fly_episodes(cfg: &TrcConfig, first: u64, n: usize) -> Vec<EpisodeReport> {
    let mut ctl = RecedingHorizon::from_config(cfg, Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap();
    assert!(ctl.has_policy(), "{}", ctl.policy_name());
    episode_specs(&cfg.problem, cfg.sim.seed, first, n).iter().map(|spec| fly(&mut ctl, &cfg.problem, &cfg.sim, spec).unwrap()).collect()
}

#[test]
fn trc_with_the_terminal_correction_lands_in_closed_loop() {
    let cfg = config();
    assert!(cfg.controller.terminal_correction.enabled && cfg.controller.gate_altitude_m > 0.0, "config/descent.yaml turns both on");
    let reports = fly_episodes(&cfg, 0, 2);
    for r in &reports {
        eprintln!("{:?}", r.result);
        assert!(r.result.touched_down);
        assert!(r.result.success, "touchdown {:.2} m, {:.2} m/s", r.result.position_error, r.result.speed);
        assert!(r.fuel_gap.is_finite() && r.fuel_gap > -0.05, "no episode beats the LCvx optimum by more than noise: {}", r.fuel_gap);
        assert_eq!(r.late, 0);
        // the last seconds are the planned terminal phase (TERMINAL), never a missed deadline
        assert!(r.terminal > 0);
        assert_eq!(r.fallback_shifted, 0, "1 s deadline: no deadline is missed in lockstep");
    }
}

#[test]
fn without_the_correction_the_network_lands_when_it_also_chooses_the_landing_time() {
    // the same episode with the correction off: with a fixed landing time the network's plans
    // run out of thrust on the final burn and miss; with retiming by re-planning (the network
    // asked for plans at moved landing times, `retime_with_policy`) they land
    let mut cfg = config();
    cfg.controller.terminal_correction.enabled = false;
    cfg.controller.terminal_correction.retime_with_policy = false;
    let fixed = &fly_episodes(&cfg, 0, 1)[0];
    eprintln!("fixed landing time: {:?}", fixed.result);
    assert!(
        !fixed.result.success,
        "with a fixed landing time the raw tiny network misses (docs/refinement-log.md); if it now lands, update the docs and this test"
    );
    cfg.controller.terminal_correction.retime_with_policy = true;
    let retimed = &fly_episodes(&cfg, 0, 1)[0];
    eprintln!("retimed by the network: {:?}", retimed.result);
    assert!(retimed.result.success, "touchdown {:.2} m, {:.2} m/s", retimed.result.position_error, retimed.result.speed);
    assert_eq!(retimed.correction_steps_per_plan, 0.0, "no Gauss-Newton correction step: every plan is the network's");
    assert!(retimed.retimes > 0, "the landing time moved");
}

/// Issue 12: the harsh disturbance set (thrust magnitude 5%, direction 3 deg, mass estimate 3%,
/// noise 0.5 m / 0.05 m/s, 50 ms latency, 0.05 m/s^2 unmodelled acceleration, a 10% thrust loss
/// for 5 s) flown by the shipped controller (disturbance observer, position filter, thrust
/// reserve) against the same controller with those three off, on the same three episodes. The
/// shipped controller does not land every harsh episode (BENCHMARKS.md has the rate over 300;
/// misses are thrust losses on the final burn): on these it lands two of three where the
/// controller without the estimators lands none and crashes at over 10 m/s.
#[test]
fn harsh_disturbances_are_landed_with_the_estimators_and_not_without() {
    let mut cfg = config();
    cfg.sim = cfg.sim.with_disturbances(trc_control::config::Disturbances::Harsh);
    cfg.sim.seed = 3;
    let with = fly_episodes(&cfg, 0, 3);
    for r in &with {
        eprintln!("harsh, shipped: {:?}", r.result);
    }
    cfg.controller.disturbance_observer_s = 0.0;
    cfg.controller.position_filter_gain = 1.0;
    cfg.controller.terminal_correction.thrust_margin = 0.0;
    let without = fly_episodes(&cfg, 0, 3);
    for r in &without {
        eprintln!("harsh, estimators off: {:?}", r.result);
    }
    let landed = |v: &[EpisodeReport]| v.iter().filter(|r| r.result.success).count();
    let fastest = |v: &[EpisodeReport]| v.iter().map(|r| r.result.speed).fold(0.0, f64::max);
    assert!(landed(&with) >= 2, "{} of 3 harsh episodes landed", landed(&with));
    assert!(landed(&with) > landed(&without), "the estimators land more: {} vs {}", landed(&with), landed(&without));
    assert!(
        fastest(&with) < 2.0 && fastest(&without) > 5.0,
        "no hard touchdown with them ({:.2} m/s), one without ({:.2} m/s)",
        fastest(&with),
        fastest(&without)
    );
}

/// Issue 12: the reserve-keeping correction pass (`thrust_margin`) can stall a few tenths of a
/// tolerance unit short of the aim point on a thrust-saturated final burn. Released only above
/// 0.5 units (the retiming threshold), those plans were published as they were, the miss grew
/// cycle by cycle, and the vehicle arrived late and fast (seed 17, mild, episode 24: 1.48 m off
/// at 0.63 m/s). Released above 0.2 units (shipped) the same episode lands
/// (docs/robustness.md, "Releasing the reserve early"). Flown with the reserve of that time
/// (15%, no landing later to keep it): since 2026-12-07 the shipped controller keeps its 5%
/// reserve by landing later and this episode lands at either threshold.
#[test]
fn releasing_the_reserve_early_lands_a_saturated_final_burn() {
    let mut cfg = config();
    cfg.sim = cfg.sim.with_disturbances(trc_control::config::Disturbances::Mild);
    cfg.sim.seed = 17;
    assert!(cfg.controller.terminal_correction.release_threshold <= 0.2, "config/descent.yaml releases at 0.2");
    cfg.controller.terminal_correction.thrust_margin = 0.15;
    cfg.controller.terminal_correction.reserve_retime_s = 0.0;
    let shipped = &fly_episodes(&cfg, 24, 1)[0];
    eprintln!("release at 0.2: {:?}", shipped.result);
    cfg.controller.terminal_correction.release_threshold = 0.5;
    let late = &fly_episodes(&cfg, 24, 1)[0];
    eprintln!("release at 0.5: {:?}", late.result);
    assert_eq!(shipped.spec.index, 24);
    assert!(shipped.result.success, "touchdown {:.2} m, {:.2} m/s", shipped.result.position_error, shipped.result.speed);
    assert!(!late.result.success, "released at 0.5 this episode missed (1.48 m, 0.63 m/s); if it lands now, pick another episode that separates the two");
}

/// Issue 12: a plan flown at the minimum-fuel t_f ends on a full-thrust burn, so the correction
/// released the thrust reserve in almost every episode and a 10% thrust loss on the final burn
/// could not be made up: harsh set, seed 29, episode 64 (loss from 18.9 s for 5 s) crashed at
/// about 10 m/s. Landing up to 4 s later so that the plan keeps its 5% reserve
/// (`reserve_retime_s`, shipped) lands it (docs/robustness.md, "Keeping the reserve by landing
/// later").
#[test]
fn keeping_the_reserve_by_landing_later_lands_a_thrust_loss_on_the_final_burn() {
    let mut cfg = config();
    cfg.sim = cfg.sim.with_disturbances(trc_control::config::Disturbances::Harsh);
    cfg.sim.seed = 29;
    assert!(cfg.controller.terminal_correction.reserve_retime_s >= 4.0, "config/descent.yaml lands up to 4 s later to keep the reserve");
    let shipped = &fly_episodes(&cfg, 64, 1)[0];
    eprintln!("keeping the reserve: {:?}", shipped.result);
    cfg.controller.terminal_correction.reserve_retime_s = 0.0;
    let released = &fly_episodes(&cfg, 64, 1)[0];
    eprintln!("releasing it: {:?}", released.result);
    assert_eq!(shipped.spec.index, 64);
    assert!(shipped.result.success, "touchdown {:.2} m, {:.2} m/s", shipped.result.position_error, shipped.result.speed);
    assert!(
        !released.result.success && released.result.speed > 2.0,
        "without landing later this episode crashed (18.9 m, 10.2 m/s); now {:.2} m, {:.2} m/s: if it lands, pick another episode that separates the two",
        released.result.position_error,
        released.result.speed
    );
}

/// Issue 12: after a thrust loss and a divert (harsh set, seed 17, episode 4) the vehicle reaches
/// its last metres low and 6 m to the side. With the correction's glide-slope rows stopping 10 m
/// above the site (before 2026-12-06) its flat final approach passed 0.48 m under the cone
/// (limit 0.27 m) on a soft, on-target touchdown; with the rows down to 1.5 m it stays above
/// (docs/robustness.md, "The glide slope down to the gate").
#[test]
fn a_flat_final_approach_after_a_divert_keeps_the_glide_slope() {
    let mut cfg = config();
    cfg.sim = cfg.sim.with_disturbances(trc_control::config::Disturbances::Harsh);
    cfg.sim.seed = 17;
    let r = &fly_episodes(&cfg, 4, 1)[0];
    eprintln!("harsh, seed 17, episode 4: {:?}", r.result);
    assert_eq!(r.spec.index, 4);
    assert!(r.result.glide_slope_violation_m < 0.27, "{:.2} m under the glide slope", r.result.glide_slope_violation_m);
    assert!(r.result.success, "touchdown {:.2} m, {:.2} m/s", r.result.position_error, r.result.speed);
}

/// Issue 12: a far-off start (seed 29, episode 184, no disturbances: 800 m from the site at
/// 213 m) flies a fuel-optimal divert along the glide-slope cone. Corrected with the cone's rows
/// only below 0.5 tolerance units under it, the vehicle passed 0.32 m under the true glide slope
/// (limit 0.27 m) once the reserve was 5%; below 0.25 units it stays above (0.08 m)
/// (docs/robustness.md, "Keeping the reserve by landing later").
#[test]
fn a_divert_along_the_cone_keeps_the_glide_slope() {
    let mut cfg = config();
    cfg.sim.seed = 29;
    let r = &fly_episodes(&cfg, 184, 1)[0];
    eprintln!("none, seed 29, episode 184: {:?}", r.result);
    assert_eq!(r.spec.index, 184);
    assert!(r.result.glide_slope_violation_m < 0.27, "{:.2} m under the glide slope", r.result.glide_slope_violation_m);
    assert!(r.result.success, "touchdown {:.2} m, {:.2} m/s", r.result.position_error, r.result.speed);
}

/// Issue 12: a 4 s controller outage mid-flight (no state reaches the controller; the vehicle
/// flies the last sequence it received) is landed: the controller re-plans from the state after
/// the gap.
#[test]
fn a_four_second_outage_mid_flight_is_landed() {
    let mut cfg = config();
    cfg.sim = cfg.sim.with_disturbances(trc_control::config::Disturbances::Outage);
    cfg.sim.fault_window_s = [15.0, 15.0];
    let r = &fly_episodes(&cfg, 0, 1)[0];
    eprintln!("outage 15..19 s: {:?}", r.result);
    assert!(r.result.success, "touchdown {:.2} m, {:.2} m/s", r.result.position_error, r.result.speed);
    // about 40 states (4 s at 10 Hz) were never answered
    let expected = ((r.result.t * 10.0).round() as u64).saturating_sub(40);
    assert!(r.cycles <= expected + 2, "{} answers for {:.1} s of flight: the outage skipped the controller", r.cycles, r.result.t);
}

/// The clairvoyant oracle that tells an unrecoverable disturbed episode from a controller miss:
/// a nominal vehicle lands (the LCvx optimum exists), one whose engines deliver 40% of the
/// commanded thrust (below hover at the start: 0.4 rho2 < m0 |g|) cannot, and a 10% loss for 5 s
/// on a vehicle that knows it is landable.
#[test]
fn the_clairvoyant_oracle_separates_landable_from_unrecoverable_faults() {
    use trc_control::closed_loop::clairvoyant_landing;
    use trc_control::solvers::lcvx::ThrustProfile;
    let cfg = config();
    let spec = &episode_specs(&cfg.problem, cfg.sim.seed, 0, 1)[0];
    let nominal = ThrustProfile { scale: 1.0, loss: 0.0, from_s: 0.0, to_s: 0.0 };
    assert!(clairvoyant_landing(&cfg.problem, spec, nominal, [0.0; 3]));
    let weak = ThrustProfile { scale: 0.4, ..nominal };
    let d = &cfg.problem.descent;
    assert!(0.4 * d.rho2() < spec.x0[6] * 3.7114, "the weak engine is below hover");
    assert!(!clairvoyant_landing(&cfg.problem, spec, weak, [0.0; 3]));
    let loss = ThrustProfile { scale: 1.0, loss: 0.1, from_s: 10.0, to_s: 15.0 };
    assert!(clairvoyant_landing(&cfg.problem, spec, loss, [0.0, 0.0, 0.05]));
    assert!((loss.mean(9.0, 11.0) - 0.95).abs() < 1e-12 && loss.min() == 0.9);
}
