#!/usr/bin/env bash
# Reproduces the shipped models in models/: datasets (gen-data), training, held-out evaluation.
#
#   make models                       # all three problems, preset $PRESET (default tiny)
#   PRESET=paper PROBLEMS=descent make models
#
# Every number in a model card comes from this pipeline; the card records the exact command,
# seed, dataset hashes and commit. Uses the release build of trc.
set -euo pipefail
cd "$(dirname "$0")/.."
TRC=${TRC:-target/release/trc}
PRESET=${PRESET:-tiny}
PROBLEMS=${PROBLEMS:-"double_integrator vanderpol descent"}
SEED=${SEED:-1}
EPOCHS=${EPOCHS:-10}
LAMBDA=${LAMBDA:-0.1}
LR=${LR:-3e-4}
mkdir -p data models
count_for() { case "$1" in double_integrator) echo 4000;; *) echo 5000;; esac; }
for p in $PROBLEMS; do
  n=$(count_for "$p")
  train="data/${p}_train_${n}.safetensors"
  [ -f "$train" ] || "$TRC" gen-data --problem "$p" --count "$n" --seed "$SEED" --split train --out "$train"
  for s in val test; do
    f="data/${p}_${s}.safetensors"
    [ -f "$f" ] || "$TRC" gen-data --problem "$p" --count 500 --seed "$SEED" --split "$s" --out "$f"
  done
  "$TRC" train --train "$train" --val "data/${p}_val.safetensors" --preset "$PRESET" --out "models/${p}" \
    --epochs "$EPOCHS" --seed 0 --lambda "$LAMBDA" --lr "$LR"
  "$TRC" eval --model "models/${p}" --test "data/${p}_test.safetensors" --ks 1,2,3,5 --update-card
done
