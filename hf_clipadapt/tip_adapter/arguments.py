"""`TipAdapterTrainingArguments`: Tip-Adapter-F's training settings (Zhang et al., ECCV 2022).

gaopengcuhk/Tip-Adapter `main.py` L72-73 and L181: AdamW lr 1e-3, eps 1e-4, torch's default
weight decay 0.01, a cosine schedule per step, batch 256, `train_epoch` epochs (20; 100 on
EuroSAT: the presets, `configs/*.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..coop.arguments import training_presets
from ..training.arguments import FeatureTrainingArguments
from .configuration_tip_adapter import TIP_PRESETS


@dataclass
class TipAdapterTrainingArguments(FeatureTrainingArguments):
    """Tip-Adapter-F's training settings (module docstring); `epochs=None`: `config.epochs`."""

    PRESETS: ClassVar[dict] = training_presets(TIP_PRESETS)

    optim: str = field(default="adamw_torch", metadata={"help": "AdamW, as main.py."})
    learning_rate: float = field(default=1e-3, metadata={"help": "The adapter's lr."})
    adam_epsilon: float = field(default=1e-4, metadata={"help": "AdamW eps."})
    weight_decay: float = field(default=0.01, metadata={"help": "torch's AdamW default."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Cosine per step."})
    per_device_train_batch_size: int = field(default=256, metadata={"help": "Batch 256."})
