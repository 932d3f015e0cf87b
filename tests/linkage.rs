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

/// The CUDA shim (`src/model/cuda_shim.cpp`) is built with CUDA exactly where the binary links
/// `libtorch_cuda.so` (build.rs links it only for a CUDA libtorch with the CUDA headers): a CUDA
/// graph can then be captured wherever a GPU is, and a CPU-only libtorch still builds.
#[test]
fn the_cuda_shim_is_built_with_cuda_where_trc_links_libtorch_cuda() {
    let libs = needed(env!("CARGO_BIN_EXE_trc"));
    let linked = libs.contains("[libtorch_cuda.so]");
    assert_eq!(
        trc_control::model::cuda_graph::shim_has_cuda(),
        linked,
        "shim with CUDA: {}, trc links libtorch_cuda: {linked}\n{libs}",
        trc_control::model::cuda_graph::shim_has_cuda()
    );
    // torch 2.11 from PyPI (scripts/requirements-torch.txt) is a CUDA build: the shim must have CUDA
    let torch_cuda = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/lib")
        .read_dir()
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path().join("site-packages/torch/lib/libtorch_cuda.so")).filter(|p| p.is_file())));
    if torch_cuda.is_some() {
        assert!(linked, "the project's torch has libtorch_cuda.so but the shim was built without CUDA (see build.rs's warning)");
    }
}
