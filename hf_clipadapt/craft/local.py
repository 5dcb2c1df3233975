"""`LocalBlackBox`: a CLIP on this machine behind the black-box protocol.

The owner side of CraFT's setting (Wang et al., ICML 2024) when the model is local:
the CLIP is held in a name-mangled attribute (a discipline for honest experiments,
not a security boundary), images are encoded once and their features cached here
(least recently used uploads evicted past `max_cached_images` / `max_cached_uploads`),
and only NumPy scores go back. `hf_clipadapt.craft.serve` puts the same object
behind HTTP.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import numpy as np
import torch

from .protocol import BlackBoxVLM, UnknownImagesError

DEFAULT_MAX_CACHED_IMAGES = 50_000  # image features kept over all handles (ViT-B/16: 50,000 x 512 floats = 100 MB)
DEFAULT_MAX_CACHED_UPLOADS = 256


class LocalBlackBox(BlackBoxVLM):
    """Scores = logit_scale · cos(image, text) of a local CLIP, as a query-only service.

    Args:
        backbone: a `hf_clipadapt.clip.CLIPBackbone`, or a checkpoint name / alias
            ("testbed") to load one from.
        budget: the most queries allowed (see `BlackBoxVLM`).
        batch_size: images encoded per forward pass when uploading.
        max_cached_images / max_cached_uploads: the feature cache's bounds (images over
            all handles, and handles); past either, the least recently used upload is
            evicted and its handle answers "unknown" (upload again).
    """

    _refund_on_failure = True  # a query whose scoring raised got no answer

    def __init__(
        self,
        backbone,
        *,
        budget: int | None = None,
        batch_size: int = 256,
        max_cached_images: int = DEFAULT_MAX_CACHED_IMAGES,
        max_cached_uploads: int = DEFAULT_MAX_CACHED_UPLOADS,
    ):
        from ..loading import as_backbone

        name = backbone if isinstance(backbone, str) else None
        backbone = as_backbone(backbone)
        super().__init__(budget=budget, name=name or _reference(backbone))
        self.__backbone = backbone
        self.__encoder = None
        self.__features: OrderedDict[str, torch.Tensor] = OrderedDict()  # handle -> [N, D], LRU order
        self.batch_size = batch_size
        self.limit_cache(max_cached_images, max_cached_uploads)

    def limit_cache(self, max_images: int, max_uploads: int) -> None:
        """Bound the feature cache (evicting the least recently used uploads now if needed)."""
        for name, value in (("max_cached_images", max_images), ("max_cached_uploads", max_uploads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_cached_images, self.max_cached_uploads = max_images, max_uploads
        self._evict(keep=None)

    @property
    def cached_images(self) -> int:
        """Images whose features are cached now (over all handles)."""
        return sum(len(f) for f in self.__features.values())

    @property
    def cached_uploads(self) -> int:
        return len(self.__features)

    def _evict(self, keep: str | None) -> None:
        total = self.cached_images
        while self.__features and (total > self.max_cached_images or len(self.__features) > self.max_cached_uploads):
            handle = next(iter(self.__features))
            if handle == keep:
                break
            total -= len(self.__features.pop(handle))

    @property
    def image_size(self) -> int:
        """The side of the square pixel_values the vision tower takes."""
        return int(self.__backbone.config.vision_config.image_size)

    @property
    def num_channels(self) -> int:
        return int(getattr(self.__backbone.config.vision_config, "num_channels", 3))

    @property
    def max_context_tokens(self) -> int:
        """The longest context n a prompt can hold: the text tower's positions less start,
        end and at least one class-name token."""
        return int(self.__backbone.config.text_config.max_position_embeddings) - 3

    @property
    def text_width(self) -> int:
        return int(self.__backbone.config.text_config.hidden_size)

    @property
    def crop_size(self) -> int:
        return int(self.__backbone.crop_size)

    @property
    def image_processor(self):
        """The owner's image processor (what the user needs to prepare pixel values)."""
        return self.__backbone.image_processor

    def info(self) -> dict:
        """What a user needs to know to talk to this black box (served as /info)."""
        return {"name": _public_name(self.name), "text_width": self.text_width, "crop_size": self.crop_size}

    def _text_encoder(self):
        if self.__encoder is None:
            from ..clip import SoftPromptTextEncoder

            self.__encoder = SoftPromptTextEncoder(self.__backbone.model, self.__backbone.tokenizer)
        return self.__encoder

    @torch.no_grad()
    def _context_embeddings(self, text: str) -> np.ndarray:
        p0 = self._text_encoder().init_context_from_text(text).cpu().numpy()
        if len(p0) > self.max_context_tokens:
            raise ValueError(
                f"the text is {len(p0)} tokens; a prompt context holds at most {self.max_context_tokens} "
                "(the text tower's positions less start, end and a class name)"
            )
        return p0

    @torch.no_grad()
    def _upload(self, pixel_values: np.ndarray) -> str:
        n, c, h, w = pixel_values.shape
        if (c, h, w) != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(
                f"pixel_values must be [N, {self.num_channels}, {self.image_size}, {self.image_size}] "
                f"(this CLIP's channels and crop), got {pixel_values.shape}"
            )
        if not np.isfinite(pixel_values).all():
            raise ValueError("pixel_values hold NaN or inf values")
        if n > self.max_cached_images:
            raise ValueError(
                f"{n} images are more than this black box caches (max_cached_images="
                f"{self.max_cached_images}); upload fewer at a time"
            )
        handle = hashlib.sha256(pixel_values.tobytes() + str(pixel_values.shape).encode()).hexdigest()[:32]
        if handle not in self.__features:  # the same images uploaded twice are encoded once
            x = torch.from_numpy(pixel_values)
            chunks = [
                self.__backbone.encode_images(x[i : i + self.batch_size]).float()
                for i in range(0, len(x), self.batch_size)
            ]
            self.__features[handle] = torch.cat(chunks)
        self.__features.move_to_end(handle)
        self._evict(keep=handle)
        return handle

    def _check_images(self, images) -> None:
        super()._check_images(images)
        self._image_features(images)

    def _image_features(self, handle: str) -> torch.Tensor:
        if handle not in self.__features:
            raise UnknownImagesError(
                f"unknown image handle {handle!r} (never uploaded, or evicted from the cache); "
                "upload the images with upload_images (again)"
            )
        self.__features.move_to_end(handle)
        return self.__features[handle]

    @torch.no_grad()
    def _score_contexts(self, contexts: np.ndarray, images: str, class_names: list[str]) -> np.ndarray:
        feats = self._image_features(images)
        # [P, 1, n, W] broadcasts each context over the K class prompts: one text-tower pass for all P·K.
        context = torch.from_numpy(contexts).to(self.__backbone.device)[:, None]
        text = self._text_encoder()(context, class_names).float()  # [P, K, D], normalised
        return (self.__backbone.logit_scale * torch.einsum("nd,pkd->pnk", feats, text)).cpu().numpy()

    @torch.no_grad()
    def _score_texts(self, texts: list[str], images: str) -> np.ndarray:
        feats = self._image_features(images)
        text = self.__backbone.encode_texts(texts).float()
        return (self.__backbone.logit_scale * feats @ text.T).cpu().numpy()


def _public_name(name: str | None) -> str | None:
    """The name /info may show: an alias or Hub id, never a path on the owner's machine."""
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or os.path.exists(name):
        return None
    return name


def _reference(backbone) -> str | None:
    from ..checkpoints import alias_of

    return alias_of(backbone.name_or_path) or backbone.name_or_path
