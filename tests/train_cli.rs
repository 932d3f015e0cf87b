//! `trc train --budget-s` and `--resume` end to end through the binary: a budgeted run stops
//! after an epoch and leaves a whole resume point; the same command with `--resume` finishes
//! the schedule. Van der Pol, a few demonstrations, the tiny preset (seconds on CPU).

use std::path::Path;
use std::process::Command;

fn trc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trc")).args(args).env("RUST_LOG", "info").output().expect("trc runs")
}

/// A scratch directory removed at the end of the test.
struct TempDir(std::path::PathBuf);
impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn card_metric(stem: &Path, key: &str) -> f64 {
    let card: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(stem.with_extension("yaml")).unwrap()).unwrap();
    card["metrics"][key].as_f64().unwrap_or_else(|| panic!("card has no metric {key}"))
}

/// A scratch directory `<tag>_<pid>` holding Van der Pol `train.safetensors` (`train_count`
/// demonstrations) and `val.safetensors` (8), generated with `seed`.
fn scratch_with_data(tag: &str, train_count: &str, seed: &str) -> TempDir {
    let root = std::env::temp_dir().join(format!("{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let dir = TempDir(root);
    for (split, count) in [("train", train_count), ("val", "8")] {
        let out_path = dir.path().join(format!("{split}.safetensors")).display().to_string();
        let out = trc(&["gen-data", "--problem", "vanderpol", "--count", count, "--seed", seed, "--split", split, "--out", &out_path]);
        assert!(out.status.success(), "gen-data: {}", String::from_utf8_lossy(&out.stderr));
    }
    dir
}

#[test]
fn a_budgeted_run_stops_after_an_epoch_and_resumes_to_the_end() {
    let dir = scratch_with_data("trc_train_cli", "24", "3");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let stem = dir.path().join("m");
    // `--out m` relative to the working directory (the resume point's paths are resolved in it)
    let run = |extra: &[&str]| {
        let args = [
            &["train", "--train", "train.safetensors", "--val", "val.safetensors", "--out", "m", "--epochs", "3", "--batch-size", "8", "--device", "cpu"][..],
            extra,
        ]
        .concat();
        Command::new(env!("CARGO_BIN_EXE_trc")).args(&args).current_dir(dir.path()).env("RUST_LOG", "info").output().expect("trc runs")
    };
    let resume_epoch = || -> (u64, String) {
        let v: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("m.resume.yaml")).unwrap()).unwrap();
        (v["epoch"].as_u64().unwrap(), v["weights"].as_str().unwrap().to_string())
    };
    let resume_weights = || {
        let mut w: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("m.resume.e"))
            .collect();
        w.sort();
        w
    };
    // a budget no epoch fits in: the run stops after epoch 1 of 3
    let out = run(&["--budget-s", "1e-3"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "budgeted run: {log}");
    assert!(log.contains("stopped after epoch 1 of 3"), "the stop is logged with what to do: {log}");
    assert_eq!(card_metric(&stem, "train_epochs_done"), 1.0);
    assert_eq!(resume_epoch(), (1, "m.resume.e0001.safetensors".to_string()), "the state names its epoch's weights");
    assert_eq!(resume_weights(), ["m.resume.e0001.safetensors"]);
    // other settings do not continue this run
    let out = run(&["--resume", "--lr", "5e-4"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && log.contains("other settings (training.lr)"), "{log}");
    // resumed and stopped again by its own budget: epoch 2, the weights of epoch 1 removed
    let out = run(&["--resume", "--budget-s", "1e-3"]);
    assert!(out.status.success(), "resumed budgeted run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(resume_epoch().0, 2);
    assert_eq!(resume_weights(), ["m.resume.e0002.safetensors"], "older epochs' resume weights are removed");
    // the same command with --resume runs epoch 3
    let out = run(&["--resume"]);
    assert!(out.status.success(), "resumed run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(card_metric(&stem, "train_epochs_done"), 3.0);
    let csv = std::fs::read_to_string(dir.path().join("m.train.csv")).unwrap();
    assert_eq!(csv.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(resume_weights(), ["m.resume.e0003.safetensors"]);
    // a finished run resumed again trains nothing and leaves its card as it was
    let card = std::fs::read_to_string(stem.with_extension("yaml")).unwrap();
    let out = run(&["--resume"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing trained"));
    assert_eq!(std::fs::read_to_string(stem.with_extension("yaml")).unwrap(), card);
    // a fresh run removes the earlier run's resume point before it starts
    let out = run(&["--budget-s", "1e-3"]);
    assert!(out.status.success(), "fresh run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(resume_epoch().0, 1);
    assert_eq!(resume_weights(), ["m.resume.e0001.safetensors"]);
    let base = ["train", "--train", &d("train.safetensors"), "--val", &d("val.safetensors"), "--out", &d("m")];
    // a bad budget is refused with what to give
    let out = trc(&[&base[..], &["--budget-s", "0"]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive number of seconds"));
}

/// `--precision bf16` trains under bf16 autocast (here on the CPU, which supports it) and says
/// so in the card; the default leaves the card's training settings as before (no `precision`
/// key, so older resume points still match); a bad value is refused by name.
#[test]
fn bf16_training_is_recorded_in_the_card() {
    let dir = scratch_with_data("trc_train_bf16", "16", "5");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let train = |stem: &str, precision: &str| {
        trc(&[
            "train",
            "--train",
            &d("train.safetensors"),
            "--val",
            &d("val.safetensors"),
            "--out",
            &d(stem),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--precision",
            precision,
        ])
    };
    let out = train("bf", "bf16");
    assert!(out.status.success(), "bf16 training: {}", String::from_utf8_lossy(&out.stderr));
    let card: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("bf.yaml")).unwrap()).unwrap();
    assert_eq!(card["training"]["precision"].as_str(), Some("bf16"), "the card records the precision");
    assert!(card_metric(&dir.path().join("bf"), "val_loss").is_finite());
    let out = train("fp", "fp32");
    assert!(out.status.success(), "fp32 training: {}", String::from_utf8_lossy(&out.stderr));
    let card: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("fp.yaml")).unwrap()).unwrap();
    assert!(card["training"].get("precision").is_none(), "fp32 (the default) is left out of the card");
    let out = train("x", "fp16");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use fp32 or bf16"), "{}", String::from_utf8_lossy(&out.stderr));
}
