//! Dataset generation: determinism per seed, exact shard merging, disjoint splits, round trip.

use trc_control::config::{ProblemConfig, ProblemKind};
use trc_control::data::{generate, sample_instance, Dataset, GenerateOptions, Split};

fn opts(kind: ProblemKind, count: u64, shard: (u64, u64)) -> GenerateOptions {
    GenerateOptions {
        problem: ProblemConfig::new(kind),
        seed: 42,
        split: Split::Train,
        count,
        shard,
        settings: GenerateOptions::deterministic_settings(),
        progress: false,
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trc_datasets_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn same_seed_is_byte_identical_and_shards_merge(kind: ProblemKind, count: u64) {
    let (a, rep) = generate(&opts(kind, count, (0, 1))).unwrap();
    assert_eq!(rep.attempted, count);
    assert!(a.len() as u64 + rep.dropped.len() as u64 == count);
    // a different thread count (different work stealing) must not change a byte
    let (b, _) = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| generate(&opts(kind, count, (0, 1))).unwrap());
    let (pa, pb) = (tmp(&format!("{kind}_a.safetensors")), tmp(&format!("{kind}_b.safetensors")));
    a.save(&pa).unwrap();
    b.save(&pb).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap(), "{kind}: same seed must give byte-identical files");

    let shards: Vec<Dataset> = (0..3).map(|i| generate(&opts(kind, count, (i, 3))).unwrap().0).collect();
    let merged = Dataset::merge(shards).unwrap();
    let pm = tmp(&format!("{kind}_merged.safetensors"));
    merged.save(&pm).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pm).unwrap(), "{kind}: merged shards must equal the unsharded file");

    let back = Dataset::load(&pa).unwrap();
    assert_eq!(back, a, "save/load round trip");
    assert_eq!(back.u.len(), back.len() * back.horizon * back.m);
    assert_eq!(back.x.len(), back.len() * (back.horizon + 1) * back.n);
}

#[test]
fn vanderpol_datasets_are_deterministic_and_shard_exactly() {
    same_seed_is_byte_identical_and_shards_merge(ProblemKind::Vanderpol, 7);
}

#[test]
fn descent_datasets_are_deterministic_and_shard_exactly() {
    same_seed_is_byte_identical_and_shards_merge(ProblemKind::Descent, 4);
}

#[test]
fn double_integrator_dataset_holds_optimal_costs() {
    let (d, _) = generate(&opts(ProblemKind::DoubleIntegrator, 5, (0, 1))).unwrap();
    assert_eq!(d.len(), 5);
    assert!(d.cost.iter().all(|c| c.is_finite() && *c > 0.0));
}

#[test]
fn splits_are_disjoint_streams() {
    let cfg = ProblemConfig::new(ProblemKind::Vanderpol);
    for i in 0..50 {
        let tr = sample_instance(&cfg, 1, Split::Train, i).x0;
        for split in [Split::Val, Split::Test] {
            for j in 0..50 {
                assert_ne!(tr, sample_instance(&cfg, 1, split, j).x0, "train {i} equals {split:?} {j}");
            }
        }
    }
}

#[test]
fn merge_refuses_gaps_and_mismatches() {
    let a = generate(&opts(ProblemKind::Vanderpol, 6, (0, 3))).unwrap().0;
    let c = generate(&opts(ProblemKind::Vanderpol, 6, (2, 3))).unwrap().0;
    assert!(Dataset::merge(vec![a.clone(), c]).is_err(), "a gap between shards must be refused");
    let mut other = opts(ProblemKind::Vanderpol, 6, (1, 3));
    other.seed = 43;
    let b = generate(&other).unwrap().0;
    assert!(Dataset::merge(vec![a, b]).is_err(), "different seeds must be refused");
}

#[test]
fn loading_a_non_dataset_fails_clearly() {
    let p = tmp("garbage.safetensors");
    std::fs::write(&p, b"not a safetensors file").unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("not a trc_control dataset"), "{e}");
}
