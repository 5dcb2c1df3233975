"""`UEOTrainingArguments`: UEO's training settings (Liang et al., "Realistic Unsupervised CLIP
Fine-tuning with Universal Entropy Optimization", ICML 2024; tim-learn/UEO, demo.py).

The optimiser, from the official code: SGD without momentum or weight decay (demo.py line 450),
lr 1e-4 for the context and the LayerNorms alike (`--plr`/`--vlr`, lines 589-590), a cosine
schedule to 0 over every step without warm-up (line 451), batch 64 (line 591), 50 epochs (line
592) and no gradient clipping (lines 487-490 step the raw gradient; `max_grad_norm=0` switches
off the Trainer's default clipping at 1.0). UEO has no named training presets (its presets are
class splits: `hf_clipadapt.ueo.SPLIT_PRESETS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.arguments import AdaptationTrainingArguments
from .functional import OFFICIAL_LOG_EPSILON

WEIGHTS_FROM = ("cosine", "logits")


@dataclass
class UEOTrainingArguments(AdaptationTrainingArguments):
    """UEO's training settings (module docstring) and the method's switches.

    Args:
        trade: the weight of the marginal (dataset-level) entropy term against the per-sample one (1.0).
        no_weight: information maximisation (uniform weights) instead of UEO's.
        oracle: the official ablation, weights 1[known] + 1e-3 from the label column (the only
            switch that reads labels).
        augment: train on fresh augmented views each epoch (True) or the plain transform.
        weights_from: "cosine" (official: softmax of the unscaled cosine similarities) or
            "logits" (softmax of the scaled logits the model predicts with).
        log_epsilon: the ε of −Σ p·log(p + ε) in both entropies (official 1e-5; 0 = exact).
    """

    optim: str = field(default="sgd", metadata={"help": "SGD without momentum (demo.py line 450)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "--plr = --vlr = 1e-4."})
    weight_decay: float = field(default=0.0, metadata={"help": "No weight decay."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Cosine to 0 over every step."})
    warmup_steps: float = field(default=0, metadata={"help": "No warm-up."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch 64."})
    num_train_epochs: float = field(default=50, metadata={"help": "50 epochs."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "No clipping."})
    trade: float = field(default=1.0, metadata={"help": "Weight of the marginal entropy term."})
    no_weight: bool = field(default=False, metadata={"help": "Information maximisation (uniform weights)."})
    oracle: bool = field(default=False, metadata={"help": "The oracle ablation (reads labels)."})
    augment: bool = field(default=True, metadata={"help": "Fresh augmented views each epoch."})
    weights_from: str = field(default="cosine", metadata={"help": f"One of {WEIGHTS_FROM}."})
    log_epsilon: float = field(default=OFFICIAL_LOG_EPSILON, metadata={"help": "ε in the entropies (0 = exact)."})

    def __post_init__(self):
        check_method_settings(self.no_weight, self.oracle, self.weights_from)
        super().__post_init__()


def check_method_settings(no_weight: bool, oracle: bool, weights_from: str) -> None:
    """Refuse both ablations at once and an unknown weight source."""
    if no_weight and oracle:
        raise ValueError("no_weight=True and oracle=True are two different ablations; choose one")
    if weights_from not in WEIGHTS_FROM:
        raise ValueError(f"weights_from must be 'logits' or 'cosine', got {weights_from!r}")


def method_settings(args) -> dict:
    """UEO's switches (trade, no_weight, oracle, augment, weights_from, log_epsilon) from `args`
    (a `UEOTrainingArguments`, another `AdaptationTrainingArguments`, a dict or None), read
    before the arguments are built (building them resets Accelerate's state, which the weight
    pass may use). An unknown dict key is refused."""
    from ..training.arguments import check_overrides

    names = ("trade", "no_weight", "oracle", "augment", "weights_from", "log_epsilon")
    defaults = UEOTrainingArguments.method_defaults()
    if isinstance(args, AdaptationTrainingArguments):
        out = {k: getattr(args, k, defaults[k]) for k in names}
    else:
        given = check_overrides(args, UEOTrainingArguments)
        out = {k: given.get(k, defaults[k]) for k in names}
    check_method_settings(out["no_weight"], out["oracle"], out["weights_from"])
    return out
