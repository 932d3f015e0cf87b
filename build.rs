//! Link settings of every binary.
//!
//! 1. **libtorch for real.** Rust links with `--as-needed`, and nothing in tch refers to a symbol
//!    of `libtorch.so` itself (only `libtorch_cpu` / `libc10`), so without this the binaries never
//!    load `libtorch.so` and with it `libtorch_cuda.so`: `tch::Cuda::is_available()` is false on
//!    every GPU (tch-rs issue #980; `docs/gpu.md`). `tests/linkage.rs` checks `readelf -d`.
//! 2. **libpython (ROS 2 from PyPI wheels, feature `ros`).** The wheels' `librcl.so` pulls in
//!    `*__rosidl_generator_py.so` libraries that need CPython symbols at load time (`undefined
//!    symbol: PyExc_RuntimeError` otherwise; `docs/toolchain.md`). `scripts/setup.sh` writes
//!    `TRC_LINK_PYTHON=LIBDIR:NAME` into `trc-env.sh` in that mode; with a system ROS 2, or
//!    without the `ros` feature (a ROS-free `trc` for a GPU machine), nothing is added.
//! 3. **The CUDA shim** (`src/model/cuda_shim.cpp`, Rust side `src/model/cuda_graph.rs`): CUDA
//!    graphs, autocast's dtype and CUDA's sync debug mode, which tch does not expose, compiled
//!    with `cc` against the libtorch tch uses (found as torch-sys finds it: `LIBTORCH_USE_PYTORCH`
//!    asks the Python's torch, else `LIBTORCH`). With a CUDA libtorch and the CUDA runtime headers
//!    (the torch wheel's `nvidia/*/include`, `CUDA_HOME` or `/usr/local/cuda`) it links
//!    `libtorch_cuda` / `libc10_cuda`; otherwise it is built with `TRC_NO_CUDA` and its graph
//!    functions report that (`trc` still builds and runs on the CPU).
use std::path::{Path, PathBuf};

/// libtorch's include folders and lib folder, as torch-sys finds them.
fn libtorch_dirs() -> Option<(Vec<PathBuf>, PathBuf)> {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        let script = "from torch.utils import cpp_extension\nfor p in cpp_extension.include_paths(): print('INC', p)\nfor p in cpp_extension.library_paths(): print('LIB', p)";
        let out = std::process::Command::new(python).arg("-c").arg(script).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let inc: Vec<PathBuf> = text.lines().filter_map(|l| l.strip_prefix("INC ")).map(PathBuf::from).collect();
        let lib = text.lines().find_map(|l| l.strip_prefix("LIB ")).map(PathBuf::from)?;
        return Some((inc, lib));
    }
    let root = PathBuf::from(std::env::var_os("LIBTORCH")?);
    let inc = vec![root.join("include"), root.join("include/torch/csrc/api/include")];
    Some((inc, root.join("lib")))
}

/// The include folders for the CUDA runtime headers: the one holding `cuda_runtime_api.h` (the
/// CUDA wheels' next to torch in site-packages, `CUDA_HOME`'s or `/usr/local/cuda`'s), and, where
/// that one lacks the compiler configuration headers `crt/host_config.h` (the runtime wheel ships
/// without them), the first folder that has them (triton's copy, installed with torch).
fn cuda_include(torch_lib: &Path) -> Option<Vec<PathBuf>> {
    let mut candidates = Vec::new();
    if let Some(site) = torch_lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("include")).collect();
            dirs.sort();
            candidates.extend(dirs);
        }
        candidates.push(site.join("triton/backends/nvidia/include"));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    let runtime = candidates.iter().find(|d| d.join("cuda_runtime_api.h").is_file())?.clone();
    if runtime.join("crt/host_config.h").is_file() {
        return Some(vec![runtime]);
    }
    let crt = candidates.into_iter().find(|d| d.join("crt/host_config.h").is_file())?;
    Some(vec![runtime, crt])
}

fn build_shim() {
    println!("cargo:rerun-if-changed=src/model/cuda_shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let Some((inc, lib)) = libtorch_dirs() else {
        panic!("build.rs: cannot find libtorch for the CUDA shim (set LIBTORCH_USE_PYTORCH=1 with a torch in the Python, or LIBTORCH; `source trc-env.sh`)");
    };
    let mut build = cc::Build::new();
    build.cpp(true).pic(true).warnings(false).flag("-std=c++17").flag("-D_GLIBCXX_USE_CXX11_ABI=1").includes(&inc).file("src/model/cuda_shim.cpp");
    let graph_header =
        inc.iter().any(|d| d.join("ATen/cuda/CUDAGraph.h").is_file()) && lib.join("libtorch_cuda.so").is_file() && lib.join("libc10_cuda.so").is_file();
    let cuda = if graph_header { cuda_include(&lib) } else { None };
    match &cuda {
        Some(dirs) => {
            build.includes(dirs);
        }
        None => {
            build.define("TRC_NO_CUDA", None);
            println!("cargo:warning=trc_control: no CUDA headers with this libtorch: CUDA graphs disabled (CPU-only build)");
        }
    }
    build.compile("trc_cuda_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if cuda.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn main() {
    build_shim();
    println!("cargo:rerun-if-env-changed=TRC_LINK_PYTHON");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    if std::env::var_os("CARGO_FEATURE_ROS").is_none() {
        return;
    }
    if let Ok(spec) = std::env::var("TRC_LINK_PYTHON") {
        if let Some((dir, name)) = spec.split_once(':') {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-l{name}");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
