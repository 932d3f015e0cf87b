# trc_control: the two README commands, and their pieces.
#   make demo   set up, build, fly the closed-loop demo (the main job)
#   make test   set up, build, run every test (what CI runs)
SHELL := /bin/bash
CARGO_FLAGS ?=
EPISODES ?= 5
PROBLEM ?= descent

.PHONY: setup build test demo clean-env

setup:
	@scripts/setup.sh

build: setup
	source ./trc-env.sh && cargo build --all-targets $(CARGO_FLAGS)

test: setup
	source ./trc-env.sh && cargo test --all-targets $(CARGO_FLAGS)

demo: setup
	source ./trc-env.sh && cargo run $(CARGO_FLAGS) --bin trc -- demo --problem $(PROBLEM) --episodes $(EPISODES)

# Remove the project's environment (venv, interfaces, env file); the next setup rebuilds it.
clean-env:
	rm -rf .venv install build trc-env.sh
