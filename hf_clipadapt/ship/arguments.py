"""`SHIPTrainingArguments`: the training settings of SHIP's generator (Wang et al., ICCV 2023).

mrflogs/SHIP `main_coop_vae.py` L360-366: AdamW lr 1e-3 with torch's default weight decay
0.01, no schedule, batch 256 (L346), 50 epochs (here passes over the cached views). SHIP has no
named training presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.arguments import FeatureTrainingArguments


@dataclass
class SHIPTrainingArguments(FeatureTrainingArguments):
    """The generator's training settings (module docstring)."""

    optim: str = field(default="adamw_torch", metadata={"help": "AdamW."})
    learning_rate: float = field(default=1e-3, metadata={"help": "The generator's lr."})
    weight_decay: float = field(default=0.01, metadata={"help": "torch's AdamW default."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "No schedule."})
    per_device_train_batch_size: int = field(default=256, metadata={"help": "Batch 256."})
    epochs: int | None = field(default=50, metadata={"help": "Epochs of fresh images (official 50)."})
