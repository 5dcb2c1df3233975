"""One way for every example to name an image dataset.

``load_image_dataset(spec)`` returns a `datasets.DatasetDict` with ``image`` and
``label`` columns from any of:

* ``"<source>:<name>"`` (or ``"<source>:<name>@<seed>"``) for a registered source
  (`register_dataset_source`); the offline testbed registers ``testbed`` when
  `hf_clipadapt` is imported, so ``"testbed:few_shot"`` needs no network;
* a local folder: `datasets`' imagefolder (one sub-folder per class, optional
  ``train/`` and ``test/`` levels);
* anything else: a Hub dataset id (with `config`), through `load_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

_SOURCES: dict[str, Callable] = {}


def register_dataset_source(prefix: str, load: Callable) -> None:
    """Route specs ``"<prefix>:<name>[@<seed>]"`` to ``load(name, seed)`` (seed 0 when omitted)."""
    _SOURCES[prefix] = load


def _split_spec(spec: str):
    """("testbed", "few_shot", 1) for "testbed:few_shot@1"; None for other specs."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in _SOURCES:
        return None
    name, _, seed = rest.partition("@")
    if seed and not seed.isdigit():
        raise ValueError(f"the seed after '@' must be a non-negative integer, got {spec!r}")
    return prefix, name, int(seed or 0)


def load_image_dataset(spec: str, config: str | None = None):
    from datasets import load_dataset

    parts = _split_spec(spec)
    if parts is not None:
        prefix, name, seed = parts
        return _SOURCES[prefix](name, seed)
    if Path(spec).is_dir():
        return load_dataset("imagefolder", data_dir=spec)
    return load_dataset(spec, config)


def dataset_display_name(spec: str) -> str:
    """A short name for cards and result files: "testbed-few_shot" for "testbed:few_shot@1",
    the folder name for a path, the id for a Hub dataset."""
    parts = _split_spec(spec)
    if parts is not None:
        return f"{parts[0]}-{parts[1]}"
    return Path(spec).name if Path(spec).is_dir() else spec
