//! colcon (issue: robot and simulator integration, "a CI test builds the package with colcon
//! build in a temporary workspace from the wheels (the README's colcon instructions, exactly),
//! and checks the install tree"): the package as a clone lays it out (with its `.venv/` inside,
//! which is what makes the README pass `-DTRC_ROSIDL_WHEELS=ON` and leave the Python generator
//! to setup.sh) is built by `colcon build` in a temporary workspace; the install tree must hold
//! the nodes under `lib/trc_control`, launch/config/models/gazebo under `share/`, the ament index
//! entry, the message definitions and their C type support, and the installed trc_node must load
//! the installed model from the installed config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn colcon_builds_the_package_and_installs_what_ros2_launch_needs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = PathBuf::from(std::env::var("VIRTUAL_ENV").expect("source trc-env.sh (VIRTUAL_ENV)"));
    let colcon = venv.join("bin/colcon");
    assert!(colcon.exists(), "colcon not in .venv: make setup installs colcon-common-extensions (scripts/requirements-ros.txt)");
    let ws = std::env::temp_dir().join(format!("trc-colcon-ws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ws);
    let pkg = ws.join("src/trc_control");
    for f in ["CMakeLists.txt", "package.xml"] {
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::copy(root.join(f), pkg.join(f)).unwrap();
    }
    for d in ["msg", "launch", "config", "models", "gazebo"] {
        copy_dir(&root.join(d), &pkg.join(d));
    }
    // `cargo build --release --bins` first (the README): the binaries cargo built
    std::fs::create_dir_all(pkg.join("target/release")).unwrap();
    for (exe, path) in [("trc_node", env!("CARGO_BIN_EXE_trc_node")), ("trc_sim", env!("CARGO_BIN_EXE_trc_sim")), ("trc", env!("CARGO_BIN_EXE_trc"))] {
        std::fs::copy(path, pkg.join("target/release").join(exe)).unwrap();
    }
    std::os::unix::fs::symlink(&venv, pkg.join(".venv")).unwrap(); // a clone has its .venv inside
                                                                   // the README, "colcon": AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH = the wheels' prefix (.venv)
    let wheels = pkg.join(".venv").display().to_string();
    let out = Command::new(&colcon)
        .args(["build", "--packages-select", "trc_control", "--cmake-args", "-DTRC_ROSIDL_WHEELS=ON"])
        .current_dir(&ws)
        .env("AMENT_PREFIX_PATH", &wheels)
        .env("CMAKE_PREFIX_PATH", &wheels)
        .output()
        .expect("run colcon");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let stderr_log = std::fs::read_to_string(ws.join("log/latest_build/trc_control/stderr.log")).unwrap_or_default();
    assert!(out.status.success(), "colcon build failed:\n{log}\n{stderr_log}");
    let inst = ws.join("install/trc_control");
    for exe in ["trc_node", "trc_sim", "trc"] {
        let p = inst.join("lib/trc_control").join(exe);
        assert!(p.exists(), "{} missing", p.display());
        assert!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions()) & 0o111 != 0, "{exe} not executable");
    }
    for f in [
        "launch/descent.launch.py",
        "launch/descent_gazebo.launch.py",
        "config/descent.yaml",
        "config/lander_6dof.yaml",
        "models/descent.safetensors",
        "models/descent.yaml",
        "gazebo/worlds/mars_landing.sdf",
        "gazebo/bridge.yaml",
        "msg/ControlSequence.msg",
        "msg/State.msg",
        "msg/Goal.msg",
        "package.xml",
    ] {
        assert!(inst.join("share/trc_control").join(f).exists(), "share/trc_control/{f} missing");
    }
    assert!(inst.join("share/ament_index/resource_index/packages/trc_control").exists(), "no ament index entry");
    for lib in ["typesupport_c", "typesupport_introspection_c", "typesupport_fastrtps_c", "generator_c"] {
        let p = inst.join(format!("lib/libtrc_control__rosidl_{lib}.so"));
        assert!(p.exists(), "{} missing (message type support)", p.display());
    }
    // the installed node finds the installed model from the installed config (models/ beside config/)
    let ld = format!("{}:{}", inst.join("lib").display(), std::env::var("LD_LIBRARY_PATH").unwrap_or_default());
    let mut node = Command::new(inst.join("lib/trc_control/trc_node"))
        .args(["--ros-args", "--params-file"])
        .arg(inst.join("share/trc_control/config/descent.yaml"))
        .args(["-p", "node.device:=cpu"])
        .current_dir(&ws)
        .env("LD_LIBRARY_PATH", ld)
        .env("ROS_DOMAIN_ID", common::offset_ros_domain(171).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the installed trc_node");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) && node.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let exited = node.try_wait().unwrap();
    let text = common::stop(node, Duration::from_secs(5));
    assert!(exited.is_none(), "the installed trc_node exited early:\n{text}");
    assert!(text.contains("policy: trc("), "the installed trc_node did not load its model:\n{text}");
    assert!(text.contains(&inst.join("share/trc_control/models/descent").display().to_string()), "the model must come from share/:\n{text}");
    let _ = std::fs::remove_dir_all(&ws);
}
