#!/usr/bin/env bash
# The capacity ablation of the refinement issue: the shipped training recipe of PROBLEM
# (scripts/recipes.sh, the same data, settings and seed as `make models`) at a larger preset
# (default `paper`, 1.46M parameters), compared side by side with the shipped `tiny` model.
#
#   scripts/capacity_ablation.sh                      # descent, paper preset, run to the end
#   BUDGET_S=5400 scripts/capacity_ablation.sh        # stop after the epoch that ends past 1.5 h
#   REPORT=1 scripts/capacity_ablation.sh             # only write the reports of what exists
#
# On 2 CPU cores the paper preset takes tens of minutes per descent epoch, so the run is
# resumable: every epoch leaves a resume point (models/ablation/PROBLEM_PRESET.resume.*) and
# a rerun of this script continues from it (`trc train --resume`). BUDGET_S bounds one
# invocation (`trc train --budget-s`). The best-on-validation checkpoint so far is always in
# models/ablation/PROBLEM_PRESET.{safetensors,yaml}, its learning curve (wall time per epoch
# included) in .train.csv/.png.
#
# Reports, each the shipped model against the larger one on the same split at the trained K:
#   models/ablation/PROBLEM_capacity_val.md   validation split (the one a choice may use)
#   models/ablation/PROBLEM_capacity.md       held-out test split (seed 1)
# They are written once the run has finished all its epochs (or with REPORT=1, labelled by the
# epochs done in the card, `train_epochs_done`).
set -euo pipefail
cd "$(dirname "$0")/.."
TRC=${TRC:-target/release/trc}
PROBLEM=${PROBLEM:-descent}
PRESET=${PRESET:-paper}
# shellcheck source=scripts/recipes.sh
source scripts/recipes.sh
read -r epochs lr lambda tw fl <<<"$(settings_for "$PROBLEM")"
read -r -a op <<<"$(operator_for "$PROBLEM")"
case "$PROBLEM" in double_integrator) n=4000;; *) n=5000;; esac
sets=(--train "data/${PROBLEM}_train_${n}.safetensors")
if [ "$PROBLEM" = descent ]; then sets+=(--train data/descent_mid_train.safetensors); fi
for f in "data/${PROBLEM}_train_${n}.safetensors" "data/${PROBLEM}_val.safetensors" "data/${PROBLEM}_test.safetensors"; do
  [ -f "$f" ] || { echo "capacity_ablation.sh: $f missing: run PROBLEMS=$PROBLEM make models (it generates the datasets) first" >&2; exit 1; }
done
out="models/ablation/${PROBLEM}_${PRESET}"
mkdir -p models/ablation
card_value() { awk -v k="  $2:" 'index($0, k) == 1 { print $2 }' "$1.yaml"; }
if [ "${REPORT:-0}" != 1 ]; then
  extra=()
  [ -f "${out}.resume.yaml" ] && extra+=(--resume)
  [ -n "${BUDGET_S:-}" ] && extra+=(--budget-s "$BUDGET_S")
  "$TRC" train "${sets[@]}" --val "data/${PROBLEM}_val.safetensors" --preset "$PRESET" --out "$out" \
    --epochs "$epochs" --seed 0 --lambda "$lambda" --lr "$lr" --terminal-weight "$tw" --bc-relative-floor "$fl" \
    ${op[@]+"${op[@]}"} ${extra[@]+"${extra[@]}"}
  done_epochs=$(card_value "$out" train_epochs_done)
  if [ "${done_epochs%.*}" -lt "$epochs" ]; then
    echo "capacity_ablation.sh: ${done_epochs%.*} of $epochs epochs done; rerun to continue (the resume point is ${out}.resume.yaml)"
    exit 0
  fi
fi
k=$(grep -m1 '^  outer:' "models/${PROBLEM}.yaml" | awk '{print $2}')
"$TRC" eval --model "models/${PROBLEM}" --compare "$out" --test "data/${PROBLEM}_val.safetensors" --ks "$k" \
  --report "models/ablation/${PROBLEM}_capacity_val.md"
"$TRC" eval --model "models/${PROBLEM}" --compare "$out" --test "data/${PROBLEM}_test.safetensors" --ks "$k" \
  --report "models/ablation/${PROBLEM}_capacity.md"
