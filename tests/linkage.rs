//! The binaries can load CUDA: Rust links with `--as-needed`, so unless build.rs forces it, no
//! binary lists `libtorch.so` (only `libtorch_cpu` / `libc10`) and `tch::Cuda::is_available()`
//! is false on every GPU (tch-rs #980; docs/gpu.md). Fails when the link argument is lost.

use std::process::Command;

fn needed(bin: &str) -> String {
    let out = Command::new("readelf").args(["-d", bin]).output().unwrap_or_else(|e| panic!("readelf (binutils) is needed for this test: {e}"));
    assert!(out.status.success(), "readelf -d {bin} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("(NEEDED)")).collect::<Vec<_>>().join("\n")
}

#[test]
fn trc_links_libtorch_so_so_that_cuda_can_load() {
    let libs = needed(env!("CARGO_BIN_EXE_trc"));
    assert!(libs.contains("[libtorch.so]"), "target trc does not link libtorch.so; CUDA can never load in it:\n{libs}");
}

#[cfg(feature = "ros")]
#[test]
fn the_nodes_link_libtorch_so_too() {
    for bin in [env!("CARGO_BIN_EXE_trc_node"), env!("CARGO_BIN_EXE_trc_sim")] {
        let libs = needed(bin);
        assert!(libs.contains("[libtorch.so]"), "{bin} does not link libtorch.so:\n{libs}");
    }
}

#[test]
fn this_test_binary_sees_libtorch_cuda_when_there_is_a_gpu() {
    // on a CPU machine this only proves the query does not crash; on a GPU machine (nvidia-smi
    // present) it must find the device
    let has_gpu = Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    let cuda = tch::Cuda::is_available();
    if has_gpu {
        assert!(cuda, "nvidia-smi lists a GPU but libtorch sees no CUDA device");
    }
    eprintln!("GPU present: {has_gpu}; tch::Cuda::is_available() = {cuda}");
}
