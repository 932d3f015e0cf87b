#!/usr/bin/env bash
# Reproduces the shipped models in models/: datasets (gen-data), training, held-out evaluation.
#
#   make models                       # all three problems, preset $PRESET (default tiny)
#   PRESET=paper PROBLEMS=descent make models
#
# Descent adds two kinds of training data for the receding-horizon controller, both labelled by
# LCvx: mid-flight states along the optimal trajectories with the time-to-go left
# (`trc mid-flight`), and DAGGER_ROUNDS rounds of states the current model visits in closed loop
# on training-split episodes (`trc dagger`; default 0 rounds: one round on the tiny model flew
# worse in closed loop, because 60% of the visited states were infeasible at their remaining
# t_go and the labelled rest is a biased sample). Every number in a model card comes from this
# pipeline; the card records the exact command, seed, dataset hashes and commit. Uses the
# release build of trc.
set -euo pipefail
cd "$(dirname "$0")/.."
TRC=${TRC:-target/release/trc}
PRESET=${PRESET:-tiny}
PROBLEMS=${PROBLEMS:-"double_integrator vanderpol descent"}
SEED=${SEED:-1}
DAGGER_ROUNDS=${DAGGER_ROUNDS:-0}
mkdir -p data models
count_for() { case "$1" in double_integrator) echo 4000;; *) echo 5000;; esac; }
# The training recipe per problem (settings_for, operator_for): scripts/recipes.sh, shared with
# scripts/gpu_check.sh so that a GPU run trains what `make models` ships.
# shellcheck source=scripts/recipes.sh
source scripts/recipes.sh
train() { # train OUT DATA...
  local out=$1; shift
  local args=()
  for d in "$@"; do args+=(--train "$d"); done
  local settings
  settings=$(settings_for "$p")
  read -r epochs lr lambda tw fl <<<"$settings"
  local op
  read -r -a op <<<"$(operator_for "$p")"
  "$TRC" train "${args[@]}" --val "data/${p}_val.safetensors" --preset "$PRESET" --out "$out" \
    --epochs "$epochs" --seed 0 --lambda "$lambda" --lr "$lr" --terminal-weight "$tw" --bc-relative-floor "$fl" ${op[@]+"${op[@]}"}
}
# A second held-out test split from another seed (2), evaluated at the trained K; its metrics go
# into the card beside the first (prefix test_seed2) and its report to models/<p>.eval_seed2.md.
eval_seed2() {
  local f="data/${1}_test_seed2.safetensors"
  [ -f "$f" ] || "$TRC" gen-data --problem "$1" --count 500 --seed 2 --split test --out "$f"
  "$TRC" eval --model "models/${1}" --test "$f" --ks "$(grep -m1 '^  outer:' "models/${1}.yaml" | awk '{print $2}')" \
    --update-card --card-prefix test_seed2 --report "models/${1}.eval_seed2.md"
}
for p in $PROBLEMS; do
  settings_for "$p" >/dev/null # fail early on an unknown problem
  n=$(count_for "$p")
  train_set="data/${p}_train_${n}.safetensors"
  [ -f "$train_set" ] || "$TRC" gen-data --problem "$p" --count "$n" --seed "$SEED" --split train --out "$train_set"
  for s in val test; do
    f="data/${p}_${s}.safetensors"
    [ -f "$f" ] || "$TRC" gen-data --problem "$p" --count 500 --seed "$SEED" --split "$s" --out "$f"
  done
  sets=("$train_set")
  if [ "$p" = descent ]; then
    [ -f data/descent_mid_train.safetensors ] || "$TRC" mid-flight --from "$train_set" --seed 2 --out data/descent_mid_train.safetensors
    sets+=(data/descent_mid_train.safetensors)
    for r in $(seq 1 "$DAGGER_ROUNDS"); do
      train "models/${p}" "${sets[@]}"
      "$TRC" dagger --model "models/${p}" --template "$train_set" --episodes 60 --per-episode 40 --seed $((10 + r)) \
        --out "data/descent_dagger${r}.safetensors"
      sets+=("data/descent_dagger${r}.safetensors")
    done
  fi
  train "models/${p}" "${sets[@]}"
  # K in {1, 2, 3, 5} and the trained K (the card's test metrics are those at the trained K)
  k_trained=$(grep -m1 '^  outer:' "models/${p}.yaml" | awk '{print $2}')
  "$TRC" eval --model "models/${p}" --test "data/${p}_test.safetensors" --ks "$(printf '1\n2\n3\n5\n%s\n' "$k_trained" | sort -nu | paste -sd,)" --update-card
  eval_seed2 "$p"
  # the validation split the settings were chosen on, evaluated the same way (README "Shipped models")
  "$TRC" eval --model "models/${p}" --test "data/${p}_val.safetensors" --ks "$(grep -m1 '^  outer:' "models/${p}.yaml" | awk '{print $2}')" \
    --report "models/${p}.eval_val.md"
done

# Ablation: one horizon token (attention has nothing to attend to, as in the authors' code) vs
# the preset's tokens, same data and settings; accuracy side by side and batch-1 latency.
if [ "${ABLATION:-1}" = 1 ] && [[ " $PROBLEMS " == *" descent "* ]]; then
  read -r epochs lr lambda tw fl <<<"$(settings_for descent)"
  read -r -a op <<<"$(operator_for descent)"
  "$TRC" train --train data/descent_train_5000.safetensors --train data/descent_mid_train.safetensors \
    --val data/descent_val.safetensors --preset "$PRESET" --tokens 1 --out models/ablation/descent_tokens1 \
    --epochs "$epochs" --seed 0 --lambda "$lambda" --lr "$lr" --terminal-weight "$tw" --bc-relative-floor "$fl" ${op[@]+"${op[@]}"}
  "$TRC" eval --model models/descent --compare models/ablation/descent_tokens1 --test data/descent_test.safetensors \
    --ks "$(grep -m1 '^  outer:' models/descent.yaml | awk '{print $2}')" --report models/ablation/tokens.md
  "$TRC" bench inference --model models/descent --out bench/inference_shipped.md
  "$TRC" bench inference --model models/ablation/descent_tokens1 --out bench/inference_tokens1.md
fi

# Ablation: process supervision off (lambda = 0), everything else as shipped, for the problems
# trained with lambda > 0; eval --compare puts both side by side on the test split.
if [ "${ABLATION:-1}" = 1 ]; then
  for p in $PROBLEMS; do
    settings=$(settings_for "$p")
    read -r epochs lr lambda tw fl <<<"$settings"
    if awk -v l="$lambda" 'BEGIN { exit !(l + 0 == 0) }'; then continue; fi
    n=$(count_for "$p")
    sets=(--train "data/${p}_train_${n}.safetensors")
    if [ "$p" = descent ]; then sets+=(--train data/descent_mid_train.safetensors); fi
    read -r -a op <<<"$(operator_for "$p")"
    "$TRC" train "${sets[@]}" --val "data/${p}_val.safetensors" --preset "$PRESET" \
      --out "models/ablation/${p}_lambda0" --epochs "$epochs" --seed 0 --lambda 0 --lr "$lr" --terminal-weight "$tw" --bc-relative-floor "$fl" \
      ${op[@]+"${op[@]}"}
    "$TRC" eval --model "models/${p}" --compare "models/ablation/${p}_lambda0" --test "data/${p}_test.safetensors" \
      --ks "$(grep -m1 '^  outer:' "models/${p}.yaml" | awk '{print $2}')" --report "models/ablation/${p}_lambda.md"
  done
fi
