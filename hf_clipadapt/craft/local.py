"""`LocalBlackBox`: a CLIP on this machine behind the black-box protocol.

The owner side of CraFT's setting (Wang et al., ICML 2024) when the model is local:
the CLIP is held in a name-mangled attribute (a discipline for honest experiments,
not a security boundary), images are encoded once and their features cached here,
and only NumPy scores go back. `hf_clipadapt.craft.serve` puts the same object
behind HTTP.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .protocol import BlackBoxVLM


class LocalBlackBox(BlackBoxVLM):
    """Scores = logit_scale · cos(image, text) of a local CLIP, as a query-only service.

    Args:
        backbone: a `hf_clipadapt.clip.CLIPBackbone`, or a checkpoint name / alias
            ("testbed") to load one from.
        budget: the most queries allowed (see `BlackBoxVLM`).
        batch_size: images encoded per forward pass when uploading.
    """

    def __init__(self, backbone, *, budget: int | None = None, batch_size: int = 256):
        from ..modeling_utils import as_backbone

        name = backbone if isinstance(backbone, str) else None
        backbone = as_backbone(backbone)
        super().__init__(budget=budget, name=name or _reference(backbone))
        self.__backbone = backbone
        self.__encoder = None
        self.__features: dict[str, torch.Tensor] = {}  # handle -> [N, D], owner side only
        self.batch_size = batch_size

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
        return {"name": self.name, "text_width": self.text_width, "crop_size": self.crop_size}

    def _text_encoder(self):
        if self.__encoder is None:
            from ..clip import SoftPromptTextEncoder

            self.__encoder = SoftPromptTextEncoder(self.__backbone.model, self.__backbone.tokenizer)
        return self.__encoder

    @torch.no_grad()
    def _context_embeddings(self, text: str) -> np.ndarray:
        return self._text_encoder().init_context_from_text(text).cpu().numpy()

    @torch.no_grad()
    def _upload(self, pixel_values: np.ndarray) -> str:
        handle = hashlib.sha256(pixel_values.tobytes() + str(pixel_values.shape).encode()).hexdigest()[:32]
        if handle not in self.__features:  # the same images uploaded twice are encoded once
            x = torch.from_numpy(pixel_values)
            chunks = [self.__backbone.encode_images(x[i : i + self.batch_size]).float()
                      for i in range(0, len(x), self.batch_size)]  # fmt: skip
            self.__features[handle] = torch.cat(chunks)
        return handle

    def _image_features(self, handle: str) -> torch.Tensor:
        if handle not in self.__features:
            raise KeyError(f"unknown image handle {handle!r}; upload the images with upload_images first")
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


def _reference(backbone) -> str | None:
    from ..checkpoints import alias_of

    return alias_of(backbone.name_or_path) or backbone.name_or_path
