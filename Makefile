# trc_control: the two README commands, and their pieces.
#   make demo   set up, build, fly the closed-loop demo (the main job)
#   make test   set up, build, run every test (what CI runs)
SHELL := /bin/bash
CARGO_FLAGS ?=
EPISODES ?= 5
SEED ?= 0
PROBLEM ?= descent

.PHONY: setup build test demo clean-env

setup:
	@scripts/setup.sh

build: setup
	source ./trc-env.sh && cargo build --all-targets $(CARGO_FLAGS)

test: setup
	source ./trc-env.sh && cargo test --all-targets --no-fail-fast $(CARGO_FLAGS)
	source ./trc-env.sh && cargo clippy --all-targets $(CARGO_FLAGS) -- -D warnings
	source ./trc-env.sh && cargo fmt --check
	source ./trc-env.sh && scripts/ros_free_check.sh

# The long fuzz of the node's inputs (tests/fuzz_inputs.rs; CI runs 64 cases per property).
FUZZ_CASES ?= 20000
.PHONY: fuzz
fuzz: setup
	source ./trc-env.sh && PROPTEST_CASES=$(FUZZ_CASES) cargo test --release --test fuzz_inputs

# The GPU bundle: a stripped ROS-free `trc` (no r2r, no libpython; links libtorch for CUDA),
# config/, models/ and scripts/gpu_check.sh, for a GPU machine with torch 2.11.0 (docs/gpu.md).
GPU_BUNDLE ?= target/gpu-bundle
.PHONY: gpu-bundle
gpu-bundle: setup
	source ./trc-env.sh && cargo build --release --no-default-features --bin trc
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/scripts
	cp target/release/trc $(GPU_BUNDLE)/trc && strip $(GPU_BUNDLE)/trc
	mkdir -p $(GPU_BUNDLE)/models && cp -r config $(GPU_BUNDLE)/ && for m in descent vanderpol double_integrator; do cp models/$$m.safetensors models/$$m.yaml $(GPU_BUNDLE)/models/; done
	cp scripts/gpu_check.sh scripts/gpu_refine.sh scripts/recipes.sh $(GPU_BUNDLE)/scripts/
	@! readelf -d $(GPU_BUNDLE)/trc | grep -E 'librcl|libpython' || { echo "gpu-bundle: trc links ROS or libpython"; exit 1; }
	@readelf -d $(GPU_BUNDLE)/trc | grep -q 'libtorch.so' || { echo "gpu-bundle: trc does not link libtorch.so"; exit 1; }
	@readelf -d $(GPU_BUNDLE)/trc | grep -q 'libtorch_cuda.so' || { echo "gpu-bundle: the CUDA shim was built without CUDA (no CUDA headers found: see build.rs)"; exit 1; }
	@size=$$(du -sm $(GPU_BUNDLE) | cut -f1); echo "gpu-bundle: $(GPU_BUNDLE) ($${size} MB)"; [ $$size -lt 20 ] || { echo "gpu-bundle: over 20 MB"; exit 1; }

# Release build: the demo measures real inference latency against real deadlines.
demo: setup
	source ./trc-env.sh && cargo build --release --bins $(CARGO_FLAGS) && target/release/trc demo --problem $(PROBLEM) --episodes $(EPISODES) --seed $(SEED)

# The shipped rosbags (tests/data/landing, tests/data/faults; docs/rosbags.md).
.PHONY: bags
bags: setup
	scripts/record_bags.sh

# Remove the project's environment (venv, interfaces, env file); the next setup rebuilds it.
clean-env:
	rm -rf .venv install build trc-env.sh

# Benchmark report: every section measured by the command it names (release build).
BENCH_INSTANCES ?= 50
LOSSLESS_SAMPLES ?= 1000
DATA_COUNT ?= 5000
.PHONY: bench bench-solvers bench-datasets bench-closed-loop bench-latency bench-faults bench-mujoco bench-batch
bench: bench-solvers bench-datasets bench-inference bench-batch bench-closed-loop bench-latency bench-faults bench-mujoco
	source ./trc-env.sh && cargo run --release --bin trc -- bench report

# Soak and burst over DDS (about 11 minutes; not in CI): issue 12's load check and issue 14's memory.
.PHONY: bench-reliability
bench-reliability: setup
	source ./trc-env.sh && cargo build --release --bins && target/release/trc bench reliability --busy --out bench/reliability.md && target/release/trc bench report

# The controller against the 6-DoF MuJoCo lander over DDS (about 25 minutes; docs/mujoco.md).
MUJOCO_EPISODES ?= 50
bench-mujoco: setup
	source ./trc-env.sh && cargo build --release --bins && target/release/trc bench mujoco --episodes $(MUJOCO_EPISODES) --seed 37 && target/release/trc bench report

# Batched inference on the CPU (several vehicles per call; issue 15's table).
bench-batch: setup
	source ./trc-env.sh && cargo run --release --bin trc -- bench inference --model models/descent --batch 1,8,64,512 --reps 20 --device cpu

bench-faults: setup
	source ./trc-env.sh && cargo run --release --bin trc -- bench faults --out bench/faults.md && cargo run --release --bin trc -- bench report

bench-solvers: setup
	source ./trc-env.sh && cargo run --release --bin trc -- bench solvers --instances $(BENCH_INSTANCES) --lossless-samples $(LOSSLESS_SAMPLES)

bench-datasets: setup
	source ./trc-env.sh && cargo run --release --bin trc -- bench datasets --count $(DATA_COUNT)

# Reproduce the shipped models (datasets, training, held-out evaluation): see scripts/train_models.sh.
.PHONY: models bench-inference
models: setup
	source ./trc-env.sh && cargo build --release --bin trc && scripts/train_models.sh

# Closed loop: 300 seeded episodes (seed 29, unused before 2026-12-06; resumable) with and without disturbances (lockstep), and end-to-end
# latency over DDS at 10 and 20 Hz (trc_sim + trc_node processes, real time).
CL_EPISODES ?= 300
CL_SEED ?= 29
CL_BUDGET_MIN ?= 0
bench-closed-loop: setup
	source ./trc-env.sh && cargo build --release --bins && target/release/trc bench closed-loop --episodes $(CL_EPISODES) --seed $(CL_SEED) --budget-min $(CL_BUDGET_MIN)

bench-latency: setup
	source ./trc-env.sh && cargo build --release --bins && target/release/trc bench latency

bench-inference: setup
	source ./trc-env.sh && cargo run --release --bin trc -- bench inference --preset paper
	source ./trc-env.sh && cargo run --release --bin trc -- bench inference --model models/descent --out bench/inference_shipped.md
