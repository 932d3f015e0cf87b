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

#[test]
fn a_budgeted_run_stops_after_an_epoch_and_resumes_to_the_end() {
    let root = std::env::temp_dir().join(format!("trc_train_cli_{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let dir = TempDir(root);
    let d = |name: &str| dir.path().join(name).display().to_string();
    for (split, count) in [("train", "24"), ("val", "8")] {
        let out = trc(&["gen-data", "--problem", "vanderpol", "--count", count, "--seed", "3", "--split", split, "--out", &d(&format!("{split}.safetensors"))]);
        assert!(out.status.success(), "gen-data: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stem = dir.path().join("m");
    let (train, val, stem_s) = (d("train.safetensors"), d("val.safetensors"), stem.display().to_string());
    let base = ["train", "--train", &train, "--val", &val, "--out", &stem_s, "--epochs", "3", "--batch-size", "8", "--device", "cpu"];
    // a budget no epoch fits in: the run stops after epoch 1 of 3
    let out = trc(&[&base[..], &["--budget-s", "1e-3"]].concat());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "budgeted run: {log}");
    assert!(log.contains("stopped after epoch 1 of 3"), "the stop is logged with what to do: {log}");
    assert_eq!(card_metric(&stem, "train_epochs_done"), 1.0);
    let state: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("m.resume.yaml")).unwrap()).unwrap();
    assert_eq!(state["epoch"].as_u64(), Some(1));
    assert_eq!(state["weights"].as_str(), Some("m.resume.e0001.safetensors"), "the state names its epoch's weights");
    assert!(dir.path().join("m.resume.e0001.safetensors").exists());
    // the same command with --resume runs epochs 2 and 3
    let out = trc(&[&base[..], &["--resume"]].concat());
    assert!(out.status.success(), "resumed run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(card_metric(&stem, "train_epochs_done"), 3.0);
    let csv = std::fs::read_to_string(dir.path().join("m.train.csv")).unwrap();
    assert_eq!(csv.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert!(dir.path().join("m.resume.e0003.safetensors").exists());
    assert!(!dir.path().join("m.resume.e0001.safetensors").exists(), "older epochs' resume weights are removed");
    // a bad budget is refused with what to give
    let out = trc(&[&base[..], &["--budget-s", "0"]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive number of seconds"));
}
