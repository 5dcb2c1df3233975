"""Training-time augmentation for cached multi-view features, without torchvision.

Few-shot CLIP methods (Tip-Adapter, GDA, SHIP, ...) encode each training image
several times under random-resized-crop + horizontal flip and train on the cached
features. `AugmentedViews` is that augmentation as a `features.extract_features`
transform. Its randomness is a function of (seed, dataset index, view) only, so the
cached features do not depend on batch size, worker count or number of processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..configuration_utils import DEFAULT_SEED


def _uniform(generator, low: float, high: float) -> float:
    if isinstance(generator, torch.Generator):
        return low + (high - low) * torch.rand((), generator=generator).item()
    return float(generator.uniform(low, high))


def _randint(generator, high: int) -> int:
    """Uniform integer in [0, high]."""
    if isinstance(generator, torch.Generator):
        return int(torch.randint(0, high + 1, (), generator=generator))
    return int(generator.integers(0, high + 1))


def _check_range(name: str, bounds, low_limit: float) -> tuple[float, float]:
    low, high = map(float, bounds)
    if not low_limit < low <= high:
        raise ValueError(f"{name} must be (low, high) with {low_limit} < low <= high, got {bounds}")
    return low, high


def random_resized_crop_box(width: int, height: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), generator=None):
    """(left, top, right, bottom) of a random crop covering a `scale` fraction of the area
    with aspect ratio (w/h) in `ratio`, log-uniform; after 10 misses, the central crop
    closest to the ratio range (as in the Inception-style crop every CLIP paper uses)."""
    generator = np.random.default_rng() if generator is None else generator
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = _randint(generator, width - w), _randint(generator, height - h)
            return left, top, left + w, top + h
    # Fallback: whole image, trimmed to the nearest allowed aspect ratio.
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def random_resized_crop(img: Image.Image, size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), generator=None) -> Image.Image:
    """Crop a random region (area fraction in `scale`, aspect ratio in `ratio`) and resize it
    to `size` (int for square, or (height, width)) with bicubic interpolation.

    `generator` is a `numpy.random.Generator` or a `torch.Generator` (fresh entropy if None).
    """
    scale = _check_range("scale", scale, 0.0)
    ratio = _check_range("ratio", ratio, 0.0)
    if scale[1] > 1.0:
        raise ValueError(f"scale is an area fraction of the image, so at most 1.0; got {scale}")
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    box = random_resized_crop_box(img.width, img.height, scale, ratio, generator)
    return img.resize((out_w, out_h), Image.Resampling.BICUBIC, box=box)


# dataset name (its `info.dataset_name`, or the part before ":") -> training augmentation settings
_DATASET_AUGMENTATIONS: dict[str, dict] = {}


def register_dataset_augmentation(dataset_name: str, *, view_flip: bool) -> None:
    """Declare the training augmentation that suits a dataset: `fit` of a model whose
    `config.view_flip` is None (the default) flips views only if the dataset allows it.
    `dataset_name` matches a dataset's `info.dataset_name` exactly, or its part before
    ":" ("testbed" covers "testbed:few_shot"). The testbed registers `view_flip=False`:
    its digits and clothes are never mirrored in pretraining."""
    _DATASET_AUGMENTATIONS[str(dataset_name)] = {"view_flip": bool(view_flip)}


def dataset_augmentation(dataset) -> dict:
    """The augmentation settings registered for `dataset` (by its `info.dataset_name`), or {}."""
    name = getattr(getattr(dataset, "info", None), "dataset_name", None)
    if not isinstance(name, str):
        return {}
    return dict(_DATASET_AUGMENTATIONS.get(name) or _DATASET_AUGMENTATIONS.get(name.split(":")[0]) or {})


class AugmentedViews:
    """`(images, indices, view) -> pixel_values`: random-resized-crop, random flip, then `preprocess`.

    Args:
        preprocess: images -> pixel values, e.g. `CLIPBackbone.preprocess` or
            `efficientnet_preprocess` (examples/offline_assets).
        size: crop output size (the model's input resolution, 224 for ViT-B/16).
        scale: crop area fraction range; (0.5, 1.0) as in Tip-Adapter/GDA.
        ratio: crop aspect-ratio range.
        flip: flip horizontally with probability 1/2.
        seed: base seed; view v of sample i always gets the same crop for a given seed.
    """

    def __init__(
        self,
        preprocess,
        size: int = 224,
        scale=(0.5, 1.0),
        ratio=(3 / 4, 4 / 3),
        flip: bool = True,
        seed: int = DEFAULT_SEED,
    ):
        if not callable(preprocess):
            raise TypeError(f"preprocess must be a callable images -> pixel_values, got {type(preprocess).__name__}")
        self.preprocess = preprocess
        self.size = size
        self.scale = _check_range("scale", scale, 0.0)
        self.ratio = _check_range("ratio", ratio, 0.0)
        if self.scale[1] > 1.0:
            raise ValueError(f"scale is an area fraction of the image, so at most 1.0; got {scale}")
        self.flip = flip
        self.seed = int(seed)

    @property
    def cache_id(self) -> str:
        # Every parameter that changes the pixels, plus what preprocess is (so two
        # backbones' crops never share a cache entry).
        pre = getattr(self.preprocess, "cache_id", None) or getattr(
            getattr(self.preprocess, "__self__", None), "preprocess_cache_id", None
        )
        pre = pre or getattr(self.preprocess, "__qualname__", type(self.preprocess).__qualname__)
        return (
            f"AugmentedViews(size={self.size},scale={self.scale},ratio={tuple(round(r, 6) for r in self.ratio)},"
            f"flip={self.flip},seed={self.seed},preprocess={pre})"
        )

    def generator(self, index: int, view: int) -> np.random.Generator:
        """The RNG of (sample index, view): independent streams via NumPy's SeedSequence."""
        return np.random.default_rng([self.seed, int(index), int(view)])

    def augment(self, img: Image.Image, index: int, view: int) -> Image.Image:
        rng = self.generator(index, view)
        img = img.convert("RGB") if img.mode != "RGB" else img
        img = random_resized_crop(img, self.size, self.scale, self.ratio, rng)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def __call__(self, images, indices, view: int) -> torch.Tensor:
        indices = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        if len(indices) != len(images):
            raise ValueError(f"got {len(images)} images but {len(indices)} indices; pass one dataset index per image")
        return self.preprocess([self.augment(img, i, view) for img, i in zip(images, indices)])

    def __repr__(self) -> str:
        return self.cache_id
