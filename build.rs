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
fn main() {
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
