"""`CLIPAdapterTrainingArguments`: CLIP-Adapter's training settings (Gao et al., IJCV 2024).

The official code (gaopengcuhk/CLIP-Adapter) has no training config of its own: it runs inside
CoOp's Dassl trainer with CoOp's configs (its README: follow CoOp's command), so the settings are
CoOp's (`CoOpTrainingArguments`): SGD lr 2e-3, momentum 0.9, weight decay 5e-4, batch 32, constant
warm-up 1e-5 for one epoch, cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..coop.arguments import CoOpTrainingArguments, training_presets
from .configuration_clip_adapter import CLIPAdapterConfig


@dataclass
class CLIPAdapterTrainingArguments(CoOpTrainingArguments):
    """CLIP-Adapter's training settings: CoOp's (module docstring)."""

    PRESETS: ClassVar[dict] = training_presets(CLIPAdapterConfig.PRESETS)
