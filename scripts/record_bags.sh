#!/usr/bin/env bash
# Records the shipped bags (docs/rosbags.md), with the debug binaries the tests use:
#   tests/data/landing  trc_sim + trc_node (deadline 0.5 s: no answer cut by the clock, so the
#                       plans do not depend on the machine) + trc record over loopback DDS, one closed-loop
#                       landing of scenarios/short_landing.yaml (sim time x2, shipped model and
#                       config/descent.yaml), the whole flight (trc_sim waits for both subscribers);
#   tests/data/faults   trc make-fault-bag from it (NaN state, stale stamp, goal change,
#                       time jump backwards, wrong length).
# Then checks that `trc replay --deadline recorded` reproduces every recorded plan.
#   make bags            (re-record after changing the model, the config or the controller)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ./trc-env.sh
cargo build --bins
B="${CARGO_TARGET_DIR:-target}/debug"
export ROS_DOMAIN_ID="${BAG_DOMAIN_ID:-77}" ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
rm -rf tests/data/landing tests/data/faults
"$B/trc_node" --ros-args --params-file config/descent.yaml -p use_sim_time:=true -p controller.deadline_s:=0.5 > "$W/node.log" 2>&1 &
NODE=$!
"$B/trc" record -o tests/data/landing --use-sim-time > "$W/record.log" 2>&1 &
REC=$!
"$B/trc_sim" --ros-args --params-file config/descent.yaml -p use_sim_time:=true -p sim.time_scale:=2.0 \
  -p sim.episodes:=1 -p sim.wait_for_subscribers:=2 -p sim.scenario:=scenarios/short_landing.yaml > "$W/sim.log" 2>&1
sleep 1
kill -INT "$REC"; wait "$REC"
kill -INT "$NODE"; wait "$NODE" || true
grep -h "LANDED\|MISSED\|messages" "$W/sim.log" "$W/record.log" | sed 's/^/[bags] /'
"$B/trc" make-fault-bag --from tests/data/landing --out tests/data/faults
"$B/trc" replay tests/data/landing --deadline recorded --rows 0 | grep "cycles:"
du -sh tests/data/landing tests/data/faults
