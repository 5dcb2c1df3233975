"""One way for every example to name an image dataset.

``load_image_dataset(spec)`` returns a `datasets.DatasetDict` with ``image`` and
``label`` columns from any of:

* ``"testbed:<suite>"`` (or ``"testbed:<suite>@<seed>"``): a suite of the offline
  testbed world (`hf_clipadapt.testbed.load_suite`), no network needed;
* a local folder: `datasets`' imagefolder (one sub-folder per class, optional
  ``train/`` and ``test/`` levels);
* anything else: a Hub dataset id (with `config`), through `load_dataset`.
"""

from __future__ import annotations

from pathlib import Path

TESTBED_PREFIX = "testbed:"


def load_image_dataset(spec: str, config: str | None = None):
    from datasets import load_dataset

    if spec.startswith(TESTBED_PREFIX):
        from ..testbed import SUITES, load_suite

        suite, _, seed = spec[len(TESTBED_PREFIX) :].partition("@")
        if suite not in SUITES:
            raise ValueError(f"unknown testbed suite {suite!r} in {spec!r}; use one of {[TESTBED_PREFIX + s for s in SUITES]}")
        if seed and not seed.isdigit():
            raise ValueError(f"the seed after '@' must be a non-negative integer, got {spec!r}")
        return load_suite(suite, seed=int(seed or 0))
    if Path(spec).is_dir():
        return load_dataset("imagefolder", data_dir=spec)
    return load_dataset(spec, config)


def dataset_display_name(spec: str) -> str:
    """A short name for cards and result files: "few_shot" for "testbed:few_shot@1",
    the folder name for a path, the id for a Hub dataset."""
    if spec.startswith(TESTBED_PREFIX):
        return "testbed-" + spec[len(TESTBED_PREFIX) :].partition("@")[0]
    return Path(spec).name if Path(spec).is_dir() else spec
