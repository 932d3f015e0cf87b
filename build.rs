//! Links libpython into every binary when ROS 2 comes from PyPI wheels.
//!
//! The wheels' `librcl.so` pulls in `*__rosidl_generator_py.so` libraries that need CPython
//! symbols at load time (`undefined symbol: PyExc_RuntimeError` otherwise; see
//! `../shared/notes/toolchain.md`). `scripts/setup.sh` writes `TRC_LINK_PYTHON=LIBDIR:NAME`
//! into `trc-env.sh` in that mode; with a system ROS 2 it is unset and nothing is added.
fn main() {
    println!("cargo:rerun-if-env-changed=TRC_LINK_PYTHON");
    if let Ok(spec) = std::env::var("TRC_LINK_PYTHON") {
        if let Some((dir, name)) = spec.split_once(':') {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-l{name}");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
