#!/usr/bin/env bash
# The ROS-free build (part of `make test`): `trc` without the `ros` feature builds without r2r,
# links libtorch.so and neither librcl nor libpython, and runs the learning and benchmark
# commands end to end on a tiny problem (what a GPU machine without ROS runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '[ros-free] %s\n' "$*"; }
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --no-default-features --bin trc
BIN="$TARGET/debug/trc"
libs=$(readelf -d "$BIN" | grep NEEDED)
if grep -qE 'librcl|libpython|librmw' <<<"$libs"; then echo "$libs"; say "FAIL: the ROS-free trc links ROS 2 or libpython"; exit 1; fi
grep -q 'libtorch.so' <<<"$libs" || { echo "$libs"; say "FAIL: trc does not link libtorch.so (CUDA could never load)"; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
export RUST_LOG=warn
"$BIN" gen-data --problem double_integrator --config config/double_integrator.yaml --count 48 --seed 3 --split train --out "$W/train.safetensors"
"$BIN" gen-data --problem double_integrator --config config/double_integrator.yaml --count 16 --seed 3 --split val --out "$W/val.safetensors"
"$BIN" gen-data --problem double_integrator --config config/double_integrator.yaml --count 16 --seed 3 --split test --out "$W/test.safetensors"
"$BIN" train --train "$W/train.safetensors" --val "$W/val.safetensors" --preset tiny --epochs 2 --device cpu --out "$W/m"
"$BIN" eval --model "$W/m" --test "$W/test.safetensors" --ks 1,2
"$BIN" bench inference --model models/descent --instances 2 --reps 2 --device cpu --out "$W/inference.md"
# a recorded flight replayed without ROS 2 (docs/rosbags.md): every plan reproduced
"$BIN" replay tests/data/landing --deadline recorded --rows 0 --out "$W/replay.md"
grep -q " 0 differ" "$W/replay.md" || { say "FAIL: replay of tests/data/landing differs"; exit 1; }
for f in m.safetensors m.yaml m.eval.md inference.md; do [ -s "$W/$f" ] || { say "FAIL: $f not written"; exit 1; }; done
grep -q "TRC (K = " "$W/inference.md" || { say "FAIL: no latency table"; exit 1; }
say "ok: built without r2r, links libtorch.so, ran gen-data, train, eval, bench inference and replay"
