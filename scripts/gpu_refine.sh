#!/usr/bin/env bash
# Refinement-operator runs on a GPU machine (issue "a convergent refinement operator"): the
# `paper` preset trained with the shipped descent recipe (scripts/train_models.sh: `corrected`,
# monotone acceptance, u^(0) cloning, operator training) on the full descent training set, next to
# the `tiny` preset with the same recipe (the tiny-vs-paper ablation), each evaluated with the K
# sweep on the test split. The acceptance and the corrector run batched on the GPU.
# Runs from the GPU bundle (make gpu-bundle; this script is copied into it) or the repository
# root; everything small comes back under $OUT. Settings: EPOCHS (default 15), COUNT (training demos, 5000).
#
#   OUT=/some/dir target/gpu-bundle/scripts/gpu_refine.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRC="${TRC:-}"
if [ -z "$TRC" ]; then
  if [ -x "$ROOT/trc" ]; then TRC="$ROOT/trc"; else TRC="$ROOT/target/release/trc"; fi
fi
OUT="${OUT:-$ROOT/gpu-out}"
EPOCHS="${EPOCHS:-15}"
COUNT="${COUNT:-5000}"
mkdir -p "$OUT"
if [ -z "${LIBTORCH_LIB:-}" ]; then
  for py in python3 /opt/torch/.venv/bin/python; do
    LIBTORCH_LIB=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) && break
  done
fi
export LD_LIBRARY_PATH="$LIBTORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_LOG="${RUST_LOG:-info}"
D="$(mktemp -d)"
LOG="$OUT/gpu_refine.log"
: >"$LOG"
run() { echo "== $*" | tee -a "$LOG"; local t0=$SECONDS; "$@" >>"$LOG" 2>&1; echo "   ($((SECONDS - t0)) s)" | tee -a "$LOG"; }
nvidia-smi -L >>"$LOG" 2>&1 || true
# the same streams as scripts/train_models.sh (seed 1), generated here on all cores
run "$TRC" gen-data --problem descent --count "$COUNT" --seed 1 --split train --out "$D/descent_train.safetensors"
run "$TRC" gen-data --problem descent --count 500 --seed 1 --split val --out "$D/descent_val.safetensors"
run "$TRC" gen-data --problem descent --count 500 --seed 1 --split test --out "$D/descent_test.safetensors"
run "$TRC" mid-flight --from "$D/descent_train.safetensors" --seed 2 --out "$D/descent_mid_train.safetensors"
COMMON=(--train "$D/descent_train.safetensors" --train "$D/descent_mid_train.safetensors" --val "$D/descent_val.safetensors" --outer 3 --outer-max 6
  --start-mix 0.5 --truncate --lambda 0 --terminal-weight 0.05 --lr 3e-4 --epochs "$EPOCHS" --seed 0 --device cuda
  --newton corrected --accept --init-weight 1.0)
for preset in paper tiny; do
  run "$TRC" train "${COMMON[@]}" --preset "$preset" --out "$OUT/${preset}_descent_op"
  run "$TRC" eval --model "$OUT/${preset}_descent_op" --test "$D/descent_test.safetensors" --ks 3 --sweep 10
done
rm -f "$OUT"/*.resume.safetensors "$OUT"/*.resume.yaml
