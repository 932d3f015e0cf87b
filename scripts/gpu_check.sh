#!/usr/bin/env bash
# GPU check: one call on a GPU machine proves the ROS-free `trc` sees CUDA, trains on it, and
# measures it; everything small comes back under $OUT (small files only).
#
#   make gpu-bundle                                   # here: target/gpu-bundle/ (< 20 MB)
#   OUT=/some/dir target/gpu-bundle/scripts/gpu_check.sh   # there (bundle or repository root)
#
# Needs on that machine: an NVIDIA driver and a Python with torch 2.11.0 (the libtorch this
# binary was built against; docs/gpu.md), or LIBTORCH_LIB pointing at its lib folder.
# Writes: $OUT/gpu_report.md (device, every command and its numbers: batch-1 latency p50/p99 of
# the shipped descent model and of the `paper` preset at K = 3, eager and as a CUDA graph replay
# with the graph-vs-eager difference and a sync-free check (CUDA's sync debug mode), batched
# inference up to B = 4096 with the per-vehicle time at B = 1000 (graphs and eager), on the GPU
# and the CPU, the paper preset trained in f32 and in bf16 autocast side by side), $OUT/steps.md
# (every command and its wall time), $OUT/gpu_check.log, and $OUT/models.tar.gz: the trainings'
# checkpoints, cards and figures (paper_descent*, paper_vanderpol.*), each trained with its
# shipped recipe (scripts/recipes.sh) at the `paper` preset. Four files (a call brings back 8).
# Sizes (env): CHECK_COUNT descent demos (600), CHECK_VDP_COUNT Van der Pol demos (0: skip that
# training), CHECK_EPOCHS epochs (8), CHECK_BATCHES (1,8,64,512,1000,4096), CHECK_EAGER_BATCHES
# (1,64,1000; the eager comparison), CHECK_REPS timed calls per instance or batch size (10). The
# report is written as the steps finish, most important first (the shipped model's batch-1 and
# batched numbers), and a failed step is reported without stopping the rest. The defaults fit one
# 10-minute call on an H100 or H200 (not yet tried at these sizes: run it with a timeout that
# leaves room, the report comes back in part if it is cut short); a shippable `paper` model needs the full sets
# (CHECK_COUNT=5000 CHECK_VDP_COUNT=5000 CHECK_EPOCHS=15, several calls: train with --resume).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRC="${TRC:-}"
if [ -z "$TRC" ]; then
  if [ -x "$ROOT/trc" ]; then TRC="$ROOT/trc"; else TRC="$ROOT/target/release/trc"; fi
fi
[ -x "$TRC" ] || { echo "gpu_check: no trc binary at $TRC (run make gpu-bundle, or set TRC)" >&2; exit 2; }
OUT="${OUT:-$ROOT/gpu-out}"
COUNT="${CHECK_COUNT:-600}"
EPOCHS="${CHECK_EPOCHS:-8}"
DEVICE="${CHECK_DEVICE:-cuda}"   # cpu: try the script itself on a machine without a GPU
INSTANCES="${CHECK_INSTANCES:-10}"
VDP_COUNT="${CHECK_VDP_COUNT:-0}"
BATCHES="${CHECK_BATCHES:-1,8,64,512,1000,4096}"
EAGER_BATCHES="${CHECK_EAGER_BATCHES:-1,64,1000}"
REPS="${CHECK_REPS:-10}"
CPU_BATCHES="${CHECK_CPU_BATCHES:-1,8,64,512}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/gpu_check.log"
M="$WORK/m"   # trainings' outputs, packed into $OUT/models.tar.gz
mkdir -p "$M"
REPORT="$OUT/gpu_report.md"

if [ -z "${LIBTORCH_LIB:-}" ]; then
  for py in python3 /opt/torch/.venv/bin/python; do
    LIBTORCH_LIB=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) && break
  done
fi
[ -n "${LIBTORCH_LIB:-}" ] && [ -d "$LIBTORCH_LIB" ] || { echo "gpu_check: cannot find torch's lib folder; set LIBTORCH_LIB" >&2; exit 2; }
export LD_LIBRARY_PATH="$LIBTORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_LOG="${RUST_LOG:-info}"

# the shipped training recipes (what `make models` trains), here at the `paper` preset with
# CHECK_EPOCHS epochs
# shellcheck source=scripts/recipes.sh
source "$ROOT/scripts/recipes.sh"
recipe() { # recipe PROBLEM: the training flags of scripts/recipes.sh, less the epochs
  local e l la tw fl
  read -r e l la tw fl <<<"$(settings_for "$1")"
  echo "--lambda $la --lr $l --terminal-weight $tw --bc-relative-floor $fl $(operator_for "$1")"
}
read -r -a RECIPE_DESCENT <<<"$(recipe descent)"
read -r -a RECIPE_VDP <<<"$(recipe vanderpol)"

step() { # step TITLE CMD...: runs CMD, logs it, adds its wall time to the report; a failure is
  # reported and the script goes on (one GPU call is precious: later steps still run)
  local title="$1"; shift
  echo "== $title: $*" | tee -a "$LOG"
  local t0=$SECONDS rc=0
  "$@" >>"$LOG" 2>&1 || rc=$?
  local status="$((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ]; then
    status="FAILED (rc $rc) after $status"
    { echo; echo "**FAILED: $title** (rc $rc); last lines of the log:"; echo '```'; tail -20 "$LOG"; echo '```'; } >>"$REPORT"
  fi
  printf '| %s | `%s` | %s |\n' "$title" "$(echo "$*" | sed "s#$WORK#\$WORK#g; s#$OUT#\$OUT#g; s#$ROOT/##g")" "$status" >>"$OUT/steps.md"
  return 0
}
pack() { # the trainings' checkpoints, cards and figures as one archive in $OUT (the call brings
  # back at most 8 files), refreshed after each training so a cut-short run keeps what finished
  tar -czf "$OUT/models.tar.gz.tmp" -C "$M" . && mv "$OUT/models.tar.gz.tmp" "$OUT/models.tar.gz"
}
section() { # section NAME FILE: appends a bench's Markdown (less its title) to the report now, so a
  # run cut short by the call's time limit still brings back what it measured
  [ -f "$2" ] || return 0
  { echo "## $1"; sed -n '2,$p' "$2"; echo; } >>"$REPORT"
}

{
  echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo '```'
  nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
  echo "cores: $(nproc); libtorch: $LIBTORCH_LIB"
  echo "trc: $("$TRC" --version)"
  echo "NEEDED: $(readelf -d "$TRC" 2>/dev/null | grep NEEDED | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' ')"
  echo '```'
  echo
  echo "Steps and their wall times: steps.md. Sections in the order measured."
  echo
} >"$REPORT"
: >"$LOG"
echo '| step | command | wall |' >"$OUT/steps.md"
echo '|---|---|---|' >>"$OUT/steps.md"

# 1. the shipped descent model at batch 1 (eager and CUDA graph, sync check) and batched with
#    graphs: the issue's targets, first, so they come back even if the call runs out of time
step "inference latency, shipped descent model, $DEVICE" "$TRC" bench inference --model models/descent --device "$DEVICE" --instances "$INSTANCES" --reps "$REPS" --out "$WORK/inf_shipped_dev.md"
section "Batch 1, shipped descent model, $DEVICE" "$WORK/inf_shipped_dev.md"
step "batched inference, shipped descent model, $DEVICE (CUDA graphs)" "$TRC" bench inference --model models/descent --batch "$BATCHES" --device "$DEVICE" --instances "$INSTANCES" --reps "$REPS" --out "$WORK/batch_shipped_dev.md"
section "Batched, shipped descent model, $DEVICE, CUDA graphs" "$WORK/batch_shipped_dev.md"
grep -h "CUDA graph\|device Cuda\|device Cpu\|policy: .* on " "$LOG" | sed 's/^/    /' | sort -u | head -8 >>"$REPORT"

# 2. the paper preset: training (f32, then bf16 autocast), held-out evaluation, latency
D="$WORK/data"
mkdir -p "$D"
step "demonstrations (train)" "$TRC" gen-data --problem descent --config config/descent.yaml --count "$COUNT" --seed 1 --split train --out "$D/train.safetensors"
step "demonstrations (val)" "$TRC" gen-data --problem descent --config config/descent.yaml --count 100 --seed 1 --split val --out "$D/val.safetensors"
step "demonstrations (test)" "$TRC" gen-data --problem descent --config config/descent.yaml --count 100 --seed 1 --split test --out "$D/test.safetensors"
step "train paper preset on $DEVICE" "$TRC" train --train "$D/train.safetensors" --val "$D/val.safetensors" --preset paper --epochs "$EPOCHS" --device "$DEVICE" --seed 0 --out "$M/paper_descent" "${RECIPE_DESCENT[@]}"
step "held-out eval" "$TRC" eval --model "$M/paper_descent" --test "$D/test.safetensors" --ks 1,3,5
section "Held-out eval of the short f32 training (not a shipped model)" "$M/paper_descent.eval.md"
pack
step "inference latency, paper preset (trained above), $DEVICE" "$TRC" bench inference --model "$M/paper_descent" --device "$DEVICE" --instances "$INSTANCES" --reps "$REPS" --out "$WORK/inf_paper_dev.md"
section "Batch 1, paper preset, $DEVICE" "$WORK/inf_paper_dev.md"
step "batched inference, paper preset (trained above) K = 3, $DEVICE" "$TRC" bench inference --model "$M/paper_descent" --batch "$BATCHES" --device "$DEVICE" --instances "$INSTANCES" --reps "$REPS" --out "$WORK/batch_paper_dev.md"
section "Batched, paper preset, $DEVICE" "$WORK/batch_paper_dev.md"
# bf16 mixed precision (autocast through the CUDA shim): the same run, weights and validation f32
step "train paper preset on $DEVICE, bf16 autocast" "$TRC" train --train "$D/train.safetensors" --val "$D/val.safetensors" --preset paper --epochs "$EPOCHS" --device "$DEVICE" --seed 0 --precision bf16 --out "$M/paper_descent_bf16" "${RECIPE_DESCENT[@]}"
step "held-out eval, bf16-trained" "$TRC" eval --model "$M/paper_descent_bf16" --test "$D/test.safetensors" --ks 1,3,5
section "Held-out eval, the same training in bf16 autocast (wall times: steps.md)" "$M/paper_descent_bf16.eval.md"
pack

# 3. comparisons: eager batched on the device, the CPU, Van der Pol, a closed loop
step "batched inference, shipped descent model, $DEVICE, eager" "$TRC" bench inference --model models/descent --batch "$EAGER_BATCHES" --device "$DEVICE" --instances "$INSTANCES" --reps "$REPS" --cuda-graph false --out "$WORK/batch_shipped_dev_eager.md"
section "Batched, shipped descent model, $DEVICE, eager" "$WORK/batch_shipped_dev_eager.md"
step "inference latency, paper preset (trained above), cpu" "$TRC" bench inference --model "$M/paper_descent" --device cpu --instances "$INSTANCES" --reps "$REPS" --out "$WORK/inf_paper_cpu.md"
section "Batch 1, paper preset, CPU" "$WORK/inf_paper_cpu.md"
step "batched inference, shipped descent model, cpu" "$TRC" bench inference --model models/descent --batch "$CPU_BATCHES" --device cpu --instances "$INSTANCES" --reps "$REPS" --out "$WORK/batch_shipped_cpu.md"
section "Batched, shipped descent model, CPU" "$WORK/batch_shipped_cpu.md"
if [ "$VDP_COUNT" -gt 0 ]; then
  step "Van der Pol demonstrations" "$TRC" gen-data --problem vanderpol --count "$VDP_COUNT" --seed 1 --split train --out "$D/vdp_train.safetensors"
  step "Van der Pol demonstrations (val, test)" bash -c "'$TRC' gen-data --problem vanderpol --count 200 --seed 1 --split val --out '$D/vdp_val.safetensors' && '$TRC' gen-data --problem vanderpol --count 200 --seed 1 --split test --out '$D/vdp_test.safetensors'"
  step "train paper preset, Van der Pol, $DEVICE" "$TRC" train --train "$D/vdp_train.safetensors" --val "$D/vdp_val.safetensors" --preset paper --epochs "$EPOCHS" --device "$DEVICE" --seed 0 --out "$M/paper_vanderpol" "${RECIPE_VDP[@]}"
  step "held-out eval, Van der Pol" "$TRC" eval --model "$M/paper_vanderpol" --test "$D/vdp_test.safetensors" --ks 3,8
  section "Held-out eval, Van der Pol" "$M/paper_vanderpol.eval.md"
  pack
fi
step "closed loop, shipped model, node.device auto" "$TRC" closed-loop --problem descent --config config/descent.yaml --model models/descent --episodes 3 --out "$WORK/closed_loop.md"
section "Closed loop, shipped model, node.device auto" "$WORK/closed_loop.md"
grep -h "device Cuda\|device Cpu\|policy: .* on \|CUDA graph" "$LOG" | sed 's/^/    /' | sort -u | head -12 >>"$REPORT"
rm -f "$M"/paper_*.train.csv "$M"/*.resume.*
pack
echo "gpu_check: report $REPORT"
ls -la "$OUT"
