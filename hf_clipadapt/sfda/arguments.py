"""`SFDATrainingArguments`: the training settings of both SFDA stages.

They used to live in `SFDAConfig`. A config (or config.json) that still holds them
loads with one warning; its values become the defaults of the next `fit`
(`legacy_training_defaults` says where each goes) and are not written again on save.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..training.arguments import AdaptationTrainingArguments, split_global_batch
from .configuration_sfda import CONFIG_PRESET_KEYS, EMA_INIT, LEGACY_TRAINING_KEYS, SELECTION, preset_settings

STAGES = ("source", "target")

# old SFDAConfig keys whose SFDATrainingArguments field has another name ("batch_size" stays the
# global batch, see `fit`); the per-stage epochs and learning rates apply to their stage only
_RENAMED = {"target_lr": "learning_rate", "source_epochs": "num_train_epochs", "target_epochs": "num_train_epochs"}
_STAGE_ONLY = {"learning_rate": "source", "source_epochs": "source", "target_lr": "target", "target_epochs": "target"}
# epochs of each stage when none are given: 10 for stage 1 (`--max_epoch`), 5 for stage 2
# (GeoUniDA; tim-learn/GeoNet23_casia_tim, main_unida.py, lines 312 and 457)
DEFAULT_EPOCHS = {"source": 10.0, "target": 5.0}


@dataclass
class SFDATrainingArguments(AdaptationTrainingArguments):
    """Arguments of one SFDA stage (the GeoNet 2023 two-stage recipe, ICCV 2023 workshop).

    Defaults follow the recipe: SGD, momentum 0.9, Nesterov, weight decay 1e-3 (on
    every parameter), lr 1e-2 for the head and `backbone_lr_ratio` 0.1 of it for the
    backbone, annealed as lr·(1 + `lr_gamma`·p)^−`lr_power` over the fraction p of
    training done (this replaces `lr_scheduler_type`), no gradient clipping, and
    `num_train_epochs` 10 for stage 1 and 5 for stage 2 when not given (the GeoUniDA
    script; GeoImNet and GeoPlace adapt for 1 epoch: `from_preset`).

    Stage 1 (source): soft CE to an EMA teacher from `ema_start` of training on, weight
    `ema_weight`; the teacher is averaged once per epoch with `ema_decay`;
    `ema_teacher_init` "copy_at_ema_start" (copied from the student when the term starts)
    or "copy_at_start" (copied before training). The per-epoch average covers the
    parameters only, as in the official code; `ema_average_buffers=True` averages the
    BatchNorm running statistics too.
    Stage 2 (target): `universal_delta`, `universal_entropy_weight` (strategy "universal"),
    `shot_rounds`, `shot_threshold`, `pseudo_label_weight` ("shot", "centroid"), `topk`
    ("topk", "topk_ce"), `topk_weights` ("topk_ce"); the strategy itself is
    the model's (`config.strategy`, it also decides how `predict` rejects). `model_selection`:
    "last", "im_loss" (unsupervised) or "labelled_target_validation" (labelled target data).

    `batch_size`, when set, is the global batch: `fit` splits it over processes and
    accumulation steps into `per_device_train_batch_size`.
    """

    stage: str = field(default="source", metadata={"help": "'source' (labelled) or 'target' (unlabelled)."})
    learning_rate: float = field(default=1e-2, metadata={"help": "Head learning rate."})
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "Epochs of the stage (None: 10 source, 5 target)."}
    )
    batch_size: int | None = field(default=64, metadata={"help": "Global batch; None: per_device_train_batch_size."})
    optim: str = field(default="sgd", metadata={"help": "The recipe's optimizer."})
    momentum: float | None = field(default=0.9, metadata={"help": "SGD momentum."})
    nesterov: bool = field(default=True, metadata={"help": "Nesterov momentum."})
    weight_decay: float = field(default=1e-3, metadata={"help": "On every parameter, as in the recipe."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "No clipping in the recipe."})
    backbone_lr_ratio: float = field(default=0.1, metadata={"help": "Backbone lr = this × head lr."})
    lr_gamma: float = field(default=10.0, metadata={"help": "Schedule (1 + gamma·p)^-power."})
    lr_power: float = field(default=1.0, metadata={"help": "Schedule (1 + gamma·p)^-power."})
    ema_decay: float = field(default=0.95, metadata={"help": "Per-epoch EMA teacher decay."})
    ema_start: float = field(default=0.4, metadata={"help": "Fraction of training when the teacher term starts."})
    ema_weight: float = field(default=1.0, metadata={"help": "Weight of the soft CE to the teacher (0: off)."})
    ema_teacher_init: str = field(default="copy_at_ema_start", metadata={"help": f"One of {EMA_INIT}."})
    ema_average_buffers: bool = field(
        default=False, metadata={"help": "Also average BatchNorm statistics (official: no)."}
    )
    universal_delta: float = field(default=0.2, metadata={"help": "Universal: threshold margin growth."})
    universal_entropy_weight: float = field(default=0.3, metadata={"help": "Universal: entropy term weight."})
    shot_rounds: int = field(default=2, metadata={"help": "SHOT: centroid rounds."})
    shot_threshold: int = field(default=0, metadata={"help": "SHOT: a class needs more argmax samples than this."})
    pseudo_label_weight: float = field(default=0.3, metadata={"help": "SHOT/top-k: pseudo-label CE weight."})
    topk: int = field(default=2, metadata={"help": "Top-k: candidate labels per sample."})
    topk_weights: tuple[float, ...] = field(default=(0.3, 0.1), metadata={"help": "topk_ce: CE weight per candidate."})
    model_selection: str = field(default="last", metadata={"help": f"Target stage: one of {SELECTION}."})

    def __post_init__(self):
        for name, value, allowed in (
            ("stage", self.stage, STAGES),
            ("model_selection", self.model_selection, SELECTION),
            ("ema_teacher_init", self.ema_teacher_init, EMA_INIT),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {self.ema_decay}")
        if self.num_train_epochs is None:
            self.num_train_epochs = DEFAULT_EPOCHS[self.stage]
        self.topk_weights = tuple(float(w) for w in self.topk_weights)
        super().__post_init__()
        if self.batch_size is not None:  # the global batch, split over processes and accumulation steps
            self.per_device_train_batch_size = split_global_batch(
                self.batch_size, self.world_size, self.gradient_accumulation_steps
            )

    @classmethod
    def from_preset(cls, name: str, stage: str, **overrides) -> SFDATrainingArguments:
        """The arguments of one stage from a named preset ("geounida", "geoimnet", "geoplace"),
        any field overridden."""
        return cls(stage=stage, **{**preset_training_defaults(name, stage), **overrides})


def preset_training_defaults(name: str, stage: str) -> dict:
    """SFDATrainingArguments keyword arguments of `stage` from a named preset."""
    out = {}
    for key, value in preset_settings(name).items():
        if key in CONFIG_PRESET_KEYS or _STAGE_ONLY.get(key, stage) != stage:
            continue
        out[_RENAMED.get(key, key)] = value
    return out


def legacy_training_defaults(legacy: dict, stage: str) -> dict:
    """SFDATrainingArguments keyword arguments from the training keys an old SFDAConfig held."""
    known = {f.name for f in fields(SFDATrainingArguments)}
    out = {}
    for key, value in legacy.items():
        target = _RENAMED.get(key, key)
        if key in LEGACY_TRAINING_KEYS and target in known and _STAGE_ONLY.get(key, stage) == stage:
            out[target] = value
    return out
