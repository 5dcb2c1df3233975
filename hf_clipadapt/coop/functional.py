"""CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022) as
functions of tensors.

CoOp replaces the hand-written words of "a photo of a {class}." with M learnable
context vectors [v1 … vM] (shared by all classes, or one set per class: CSC). The
class text feature is t_k = normalise(TextEncoder([v1 … vM, class_k, "."])) and

    logits = logit_scale·x·Tᵀ,   T = [t_1 … t_K],

trained with cross-entropy on the few-shot images; CLIP itself stays frozen. The
text encoder with spliced context is `hf_clipadapt.clip.SoftPromptTextEncoder`.
"""

from __future__ import annotations

import torch


def coop_logits(image_features: torch.Tensor, class_text_features: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """logit_scale·x·Tᵀ: normalised image features [B, D] against the K prompted class features [K, D]."""
    return logit_scale * image_features @ class_text_features.T
