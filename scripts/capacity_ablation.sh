#!/usr/bin/env bash
# The capacity ablation of the refinement issue: the shipped training recipe of PROBLEM
# (scripts/recipes.sh, the same data, settings and seed as `make models`) at a larger preset
# (default `paper`, about 1.5M parameters, by problem), compared side by side with the shipped `tiny` model.
#
#   scripts/capacity_ablation.sh                      # descent, paper preset, run to the end
#   BUDGET_S=5400 scripts/capacity_ablation.sh        # stop after the epoch that ends past 1.5 h
#   REPORT=1 scripts/capacity_ablation.sh             # only write the reports of what exists
#
# On 2 CPU cores the paper preset takes tens of minutes per descent epoch, so the run is
# resumable: every epoch leaves a resume point (models/ablation/PROBLEM_PRESET.resume.*) and
# a rerun of this script continues from it (`trc train --resume`). BUDGET_S bounds one
# invocation (`trc train --budget-s`; the clock starts once the datasets are loaded and a run
# ends up to one epoch past it). A resume point written with other settings (EPOCHS, LR,
# OPERATOR) is refused; to start over, delete models/ablation/PROBLEM_PRESET.resume.*. The
# AdamW moments and the replay buffer of operator training restart at each resume. The
# best-on-validation checkpoint so far is always in
# models/ablation/PROBLEM_PRESET.{safetensors,yaml}, its learning curve (wall time per epoch
# included) in .train.csv/.png.
#
# Then, once the run has finished all its epochs (or with REPORT=1, for the checkpoint so far;
# the card's `train_epochs_done` says how far it got):
#   models/ablation/PROBLEM_PRESET.eval{,_seed2}.md  held-out test splits (seeds 1, 2) at the
#       trained K, with the K sweep; their metrics go into the card (`trc eval --update-card`)
#   models/ablation/PROBLEM_capacity_val.md   the shipped model and the larger one side by side
#       on the validation split (the split a choice between them may use)
#   bench/inference_PROBLEM_PRESET.md         batch-1 latency next to one LCvx solve (descent)
# `trc bench report` puts both cards side by side in BENCHMARKS.md ("Capacity ablation").
set -euo pipefail
cd "$(dirname "$0")/.."
TRC=${TRC:-target/release/trc}
PROBLEM=${PROBLEM:-descent}
PRESET=${PRESET:-paper}
# shellcheck source=scripts/recipes.sh
source scripts/recipes.sh
settings=$(settings_for "$PROBLEM") # fails on an unknown problem
read -r epochs lr lambda tw fl <<<"$settings"
read -r -a op <<<"$(operator_for "$PROBLEM")"
case "$PROBLEM" in double_integrator) n=4000;; *) n=5000;; esac
sets=(--train "data/${PROBLEM}_train_${n}.safetensors")
if [ "$PROBLEM" = descent ]; then sets+=(--train data/descent_mid_train.safetensors); fi
mkdir -p data models/ablation
# the datasets of `make models` (scripts/train_models.sh; deterministic per seed: the hashes in
# the shipped cards), generated where missing
[ -f "data/${PROBLEM}_train_${n}.safetensors" ] || "$TRC" gen-data --problem "$PROBLEM" --count "$n" --seed 1 --split train --out "data/${PROBLEM}_train_${n}.safetensors"
for s in val test; do
  [ -f "data/${PROBLEM}_${s}.safetensors" ] || "$TRC" gen-data --problem "$PROBLEM" --count 500 --seed 1 --split "$s" --out "data/${PROBLEM}_${s}.safetensors"
done
if [ "$PROBLEM" = descent ] && [ ! -f data/descent_mid_train.safetensors ]; then
  "$TRC" mid-flight --from data/descent_train_5000.safetensors --seed 2 --out data/descent_mid_train.safetensors
fi
out="models/ablation/${PROBLEM}_${PRESET}"
card_value() { awk -v k="  $2:" 'index($0, k) == 1 { print $2 }' "$1.yaml"; }
if [ "${REPORT:-0}" != 1 ]; then
  extra=()
  [ -f "${out}.resume.yaml" ] && extra+=(--resume)
  [ -n "${BUDGET_S:-}" ] && extra+=(--budget-s "$BUDGET_S")
  "$TRC" train "${sets[@]}" --val "data/${PROBLEM}_val.safetensors" --preset "$PRESET" --out "$out" \
    --epochs "$epochs" --seed 0 --lambda "$lambda" --lr "$lr" --terminal-weight "$tw" --bc-relative-floor "$fl" \
    ${op[@]+"${op[@]}"} ${extra[@]+"${extra[@]}"}
  done_epochs=$(card_value "$out" train_epochs_done)
  [[ $done_epochs =~ ^[0-9]+(\.0+)?$ ]] || { echo "capacity_ablation.sh: ${out}.yaml has no train_epochs_done: train with a current trc (cargo build --release)" >&2; exit 1; }
  if [ -f "${out}.resume.yaml" ]; then
    # the resume point counts the epochs done (the card is written at the best epoch and at the end)
    done_epochs=$(awk '/^epoch:/ { print $2; exit }' "${out}.resume.yaml")
  fi
  if [ "${done_epochs%.*}" -lt "$epochs" ]; then
    echo "capacity_ablation.sh: ${done_epochs%.*} of $epochs epochs done; rerun to continue (the resume point is ${out}.resume.yaml)"
    exit 0
  fi
fi
k=$(grep -m1 '^  outer:' "${out}.yaml" | awk '{print $2}')
seed2="data/${PROBLEM}_test_seed2.safetensors"
[ -f "$seed2" ] || "$TRC" gen-data --problem "$PROBLEM" --count 500 --seed 2 --split test --out "$seed2"
"$TRC" eval --model "$out" --test "data/${PROBLEM}_test.safetensors" --ks "$k" --update-card --report "${out}.eval.md"
"$TRC" eval --model "$out" --test "$seed2" --ks "$k" --update-card --card-prefix test_seed2 --report "${out}.eval_seed2.md"
"$TRC" eval --model "models/${PROBLEM}" --compare "$out" --test "data/${PROBLEM}_val.safetensors" --ks "$k" \
  --report "models/ablation/${PROBLEM}_capacity_val.md"
if [ "$PROBLEM" = descent ]; then
  "$TRC" bench inference --model "$out" --out "bench/inference_${PROBLEM}_${PRESET}.md"
fi
