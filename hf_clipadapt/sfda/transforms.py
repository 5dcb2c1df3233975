"""The SFDA image transform, and the record of it that a saved model carries.

`SFDAImageTransform` turns PIL images into normalised pixel values the way the official
GeoNet scripts do (tim-learn/GeoNet23_casia_tim, `main_unida.py`, lines 31-60): resize to a
square `resize`² (bicubic), then a centre crop of `size`, or, with `augment`, a random crop and
a horizontal flip. It has `fit`'s and `evaluate`'s signature, `transform(images, indices, view)`.

`record_preprocessing` writes what a transform does into the model: `image_size`,
`image_mean` and `image_std` in the config (the card, `evaluate` without a transform) and an
image processor doing the same resize, crop and normalisation (saved as
`preprocessor_config.json`, so `pipeline("image-classification", model=<folder>)` feeds the
model what it was trained on). `fit` calls it when its eval transform is an
`SFDAImageTransform`; with a transform of your own, call `model.record_preprocessing(...)`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Swin-B's official resize (238) before its 224 crop, kept as a ratio for other sizes.
RESIZE_RATIO = 238 / 224


class SFDAImageTransform:
    """PIL images → normalised float pixel values [B, 3, size, size].

    Args:
        size: the crop side fed to the backbone.
        mean, std: per-channel normalisation (the backbone's image processor's values).
        augment: a random crop (instead of the centre) and, with `flip`, a horizontal flip,
            both seeded by (sample index, view): the same images on any number of processes.
        resize: the square side before cropping (default: round(size · 238 / 224)).
    """

    def __init__(self, size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), *, augment=False, flip=True, resize=None):
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 channel values (std > 0), got mean={mean}, std={std}")
        self.size, self.augment, self.flip = int(size), bool(augment), bool(flip)
        self.resize = int(resize) if resize is not None else round(self.size * RESIZE_RATIO)
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be at least size ({self.size}): the crop is taken from it")
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    @classmethod
    def for_model(cls, model, *, augment: bool = False, flip: bool = True) -> SFDAImageTransform:
        """The transform recorded in `model.config` (`image_size`, `image_mean`, `image_std`), or
        built from the backbone's image processor (its crop or resize size, mean and std)."""
        c = model.config
        if getattr(c, "image_size", None):
            return cls(
                c.image_size,
                c.image_mean,
                c.image_std,
                augment=augment,
                flip=flip,
                resize=getattr(c, "image_resize", None),
            )
        proc = getattr(model, "image_processor", None)
        if proc is None:
            raise ValueError(
                "this SFDA model records no preprocessing (no image_size in its config, no image processor): "
                "pass transform= yourself, e.g. SFDAImageTransform(size, mean, std), and call "
                "model.record_preprocessing(transform) so the saved model carries it"
            )
        crop = getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}
        side = crop.get("height") or crop.get("shortest_edge")
        if not side:
            raise ValueError(f"cannot read an input size from the image processor {type(proc).__name__}: {crop}")
        return cls(side, proc.image_mean, proc.image_std, augment=augment, flip=flip)

    def __call__(self, images, indices, view) -> torch.Tensor:
        from PIL import Image

        out, margin = [], self.resize - self.size
        indices = indices.tolist() if hasattr(indices, "tolist") else list(indices)
        for img, i in zip(images, indices):
            img = img.convert("RGB").resize((self.resize, self.resize), Image.BICUBIC)
            x0 = y0 = margin // 2
            if self.augment:
                rng = np.random.default_rng([int(i), int(view)])
                x0, y0 = int(rng.integers(0, margin + 1)), int(rng.integers(0, margin + 1))
            img = img.crop((x0, y0, x0 + self.size, y0 + self.size))
            if self.augment and self.flip and rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(np.asarray(img, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
        mean, std = torch.tensor(self.mean).view(1, 3, 1, 1), torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    def image_processor(self):
        """An image processor doing this transform's evaluation path (resize to `resize`² bicubic,
        centre crop, normalise), for `pipeline`. transformers' PIL backend reproduces it exactly
        (tested); where torchvision is installed, `AutoImageProcessor` loads the torch backend,
        whose bicubic kernel differs from PIL's in the last bits."""
        from transformers import DeiTImageProcessorPil

        return DeiTImageProcessorPil(
            size={"height": self.resize, "width": self.resize},
            crop_size={"height": self.size, "width": self.size},
            resample=3,  # bicubic, as PIL.Image.BICUBIC above
            do_center_crop=True,
            do_convert_rgb=True,  # as img.convert("RGB") above: grayscale sources (MNIST) too
            image_mean=list(self.mean),
            image_std=list(self.std),
        )

    def __repr__(self) -> str:
        return (
            f"SFDAImageTransform(size={self.size}, resize={self.resize}, mean={self.mean}, std={self.std}, "
            f"augment={self.augment}, flip={self.flip})"
        )


def record_preprocessing(model, transform: SFDAImageTransform) -> None:
    """Write `transform`'s size and normalisation into `model.config` and give the model the
    matching image processor (replacing the backbone's: the saved model then preprocesses as it
    was trained and evaluated)."""
    if not isinstance(transform, SFDAImageTransform):
        raise TypeError(
            f"record_preprocessing needs an SFDAImageTransform, got {type(transform).__name__}; for a transform "
            "of your own, pass its numbers: model.record_preprocessing(SFDAImageTransform(size, mean, std, resize=...))"
        )
    c = model.config
    c.image_size, c.image_resize = transform.size, transform.resize
    c.image_mean, c.image_std = list(transform.mean), list(transform.std)
    model.image_processor = transform.image_processor()


def record_or_warn(model, transform) -> None:
    """After `fit`: record the (evaluation) transform the model was trained with if it is an
    `SFDAImageTransform`; otherwise, if nothing was recorded before, say what the saved model lacks."""
    if isinstance(transform, SFDAImageTransform):
        record_preprocessing(model, transform)
    elif not getattr(model.config, "image_size", None):
        logger.warning(
            "SFDA: the model records no input size or normalisation (fit's transform is not an "
            "SFDAImageTransform), so its card says 'not recorded' and pipeline() falls back to the backbone's "
            "image processor, if any. Call model.record_preprocessing(SFDAImageTransform(size, mean, std)) before saving."
        )
