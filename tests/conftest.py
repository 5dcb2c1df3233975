"""Suite-wide setup: offline, deterministic, small thread pool.

Method-specific fixtures live in tests/<method>/conftest.py or the test files.
"""

import os

# Read at import time by huggingface_hub/transformers/datasets: set before they load.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import inspect  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# The examples' helpers (example_utils, baselines, offline_assets) are not part of the
# package; scripts in examples/ find them beside themselves, and so do the tests.
sys.path.append(str(Path(__file__).resolve().parents[1] / "examples"))

# A test that compares floats (directly or through assert_close_scaled) is `numeric`:
# `make test-blas-variant` runs these again on other BLAS/SIMD kernels. Marked from the
# source, so a new test is covered without anyone remembering a decorator.
_FLOAT_COMPARISON = re.compile(r"assert_close|allclose|isclose|approx\(")


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            continue
        if _FLOAT_COMPARISON.search(source):
            item.add_marker(pytest.mark.numeric)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide singletons (and building TrainingArguments resets
    them): reset them after each test, so no test sees another's distributed state."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture
def tiny_clip():
    from hf_clipadapt.testing_utils import tiny_clip_model

    return tiny_clip_model()


@pytest.fixture
def tiny_tokenizer():
    from hf_clipadapt.testing_utils import tiny_clip_tokenizer

    return tiny_clip_tokenizer()


@pytest.fixture
def tiny_processor():
    from hf_clipadapt.testing_utils import tiny_image_processor

    return tiny_image_processor()
