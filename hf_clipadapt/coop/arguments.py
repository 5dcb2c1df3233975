"""`CoOpTrainingArguments`: CoOp's optimiser and schedule (Zhou et al., IJCV 2022).

KaiyangZhou/CoOp, Dassl configs `configs/trainers/CoOp/*.yaml`: SGD lr 2e-3, momentum 0.9,
weight decay 5e-4, batch 32, one warm-up epoch at a constant 1e-5, then cosine; epochs by
shot count (`COOP.md` L18-22: 50, 100 or 200; the "imagenet" preset: 50 at every count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..training.arguments import FeatureTrainingArguments
from .configuration_coop import CoOpConfig


def training_presets(config_presets: dict) -> dict:
    """The training part (`epochs`) of a method's config presets, by name."""
    return {name: {"epochs": v["epochs"]} for name, v in config_presets.items() if "epochs" in v}


@dataclass
class CoOpTrainingArguments(FeatureTrainingArguments):
    """CoOp's training settings (module docstring); `epochs=None` follows the shot count."""

    PRESETS: ClassVar[dict] = training_presets(CoOpConfig.PRESETS)

    optim: str = field(default="sgd", metadata={"help": "SGD, as Dassl's CoOp configs."})
    learning_rate: float = field(default=2e-3, metadata={"help": "OPTIM.LR."})
    momentum: float | None = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "OPTIM.WEIGHT_DECAY."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "OPTIM.LR_SCHEDULER."})
    constant_warmup_lr: float | None = field(default=1e-5, metadata={"help": "OPTIM.WARMUP_CONS_LR (1 epoch)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "DATALOADER.TRAIN_X.BATCH_SIZE."})
