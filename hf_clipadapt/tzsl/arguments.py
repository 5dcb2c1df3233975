"""`TZSLTrainingArguments`: the training settings of TZSL's three phases (until issue 26 they
were `TZSLConfig` fields; a config that still carries them loads with a FutureWarning, and
`fit` uses its values under any `args`).

The adversarial phase's length and rate are the base class's `num_train_epochs` (the config's
old `epochs`) and `learning_rate` (old `lr`); `batch_size` and `cls_batch_size` are global
(split over the processes). Defaults: TF-VAEGAN's image scripts (akshitac8/tfvaegan,
`scripts/run_*_tfvaegan.py`), on which the ICASSP 2023 method (mrflogs/icassp23, train.py)
builds; the named presets ("cub", "awa2", "sun", "flo", and the CPU-sized "fast") are the
training part of `hf_clipadapt.tzsl.PRESETS`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

from ..configuration_utils import DEFAULT_SEED, lookup_preset
from ..training.arguments import AdaptationTrainingArguments, resolve_training_arguments
from .configuration_tzsl import RENAMED, TRAINING_KEYS, training_part  # noqa: F401 (re-exported)


def _presets() -> dict:
    from .configuration_tzsl import PRESETS

    return {name: training_part(values) for name, values in PRESETS.items()}


@dataclass
class TZSLTrainingArguments(AdaptationTrainingArguments):
    """The training settings of `TZSLModel.fit` (module docstring).

    Args:
        num_train_epochs / steps_per_epoch: the adversarial phase's fixed length (never chosen
            on test data); `steps_per_epoch=None` means one generator step per seen-train batch.
        learning_rate / decoder_lr / feedback_lr: Adam(β 0.5, 0.999) rates of the generator and
            critics, the decoder, the feedback module.
        batch_size: the global batch of the first two phases.
        critic_iters: critic steps per generator step (5). gp_weight: the initial WGAN-GP
            lambda (10). adaptive_gp: lambda x1.1 when the mean penalty exceeds 1.05, /1.1
            below 1.001, after every round of critic steps (TF-VAEGAN; False = fixed).
        gan_weight: weight of the adversarial terms (gammaD = gammaG).
        decoder_weight: beta, weight of the decoder's reconstruction loss.
        feedback_train_weight: a1, the feedback's weight while training (a2, at generation, is
            `TZSLConfig.feedback_eval_weight`).
        decoder_pretrain_epochs: phase 1's epochs.
        syn_num / cls_lr / cls_epochs / cls_batch_size: phase 3, synthetic features per unseen
            class and the classifiers' optimiser (25 epochs: train_images.py lines 273-274).
        preset: the named preset these values came from.
    """

    PRESETS: ClassVar[dict] = {}  # filled below from hf_clipadapt.tzsl.PRESETS

    num_train_epochs: float = field(default=100, metadata={"help": "Adversarial-phase epochs (old `epochs`)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Generator and critics (old `lr`)."})
    steps_per_epoch: int | None = field(default=None, metadata={"help": "None: one step per seen-train batch."})
    batch_size: int = field(default=64, metadata={"help": "Global batch of phases 1 and 2."})
    critic_iters: int = field(default=5, metadata={"help": "Critic steps per generator step."})
    gp_weight: float = field(default=10.0, metadata={"help": "Initial WGAN-GP lambda."})
    adaptive_gp: bool = field(default=True, metadata={"help": "TF-VAEGAN's adaptive lambda."})
    gan_weight: float = field(default=10.0, metadata={"help": "gammaD = gammaG."})
    decoder_weight: float = field(default=0.01, metadata={"help": "beta, the reconstruction weight."})
    decoder_lr: float = field(default=1e-4, metadata={"help": "The decoder's Adam rate."})
    feedback_lr: float = field(default=1e-5, metadata={"help": "The feedback module's Adam rate."})
    feedback_train_weight: float = field(default=1.0, metadata={"help": "a1, the feedback weight in training."})
    decoder_pretrain_epochs: int = field(default=20, metadata={"help": "Phase 1 epochs."})
    syn_num: int = field(default=300, metadata={"help": "Synthetic features per unseen class."})
    cls_lr: float = field(default=1e-3, metadata={"help": "The classifiers' Adam rate."})
    cls_epochs: int = field(default=25, metadata={"help": "The classifiers' epochs."})
    cls_batch_size: int = field(default=128, metadata={"help": "The classifiers' global batch."})
    preset: str | None = field(default=None, metadata={"help": "The named preset these values came from."})

    def __post_init__(self):
        for name in ("critic_iters", "batch_size", "syn_num", "cls_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        super().__post_init__()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> TZSLTrainingArguments:
        """The training settings of a named preset ("cub", "awa2", "sun", "flo", "fast"), any field overridden."""
        key, values = lookup_preset(cls.PRESETS, name, cls.__name__)
        return cls(**{**values, "preset": key, **overrides})


TZSLTrainingArguments.PRESETS = _presets()


def resolve_tzsl_arguments(config, seed: int = DEFAULT_SEED, args=None) -> TZSLTrainingArguments:
    """The run's `TZSLTrainingArguments`: the training settings of the preset the model was built
    from (`config.preset`; else the class defaults), those an old config still carries, then
    `args` (an instance is used as it is; a dict's unknown key is refused, its old names
    `epochs`/`lr` are taken with a FutureWarning).

    Args:
        config: the model's `TZSLConfig`.
        seed: the run's seed (a dict's "seed" wins).
        args: a `TZSLTrainingArguments`, a dict of overrides, or None.
    """
    old = sorted(set(args) & set(RENAMED)) if isinstance(args, dict) else []
    if old:
        warnings.warn(
            f"TZSL's training settings {old} are now named {[RENAMED[k] for k in old]} (TZSLTrainingArguments)",
            FutureWarning,
            stacklevel=4,
        )
        args = {RENAMED.get(k, k): v for k, v in args.items()}
    defaults = dict(TZSLTrainingArguments.PRESETS.get(config.preset, {})) if config.preset else {}
    defaults.update(getattr(config, "_legacy_training", None) or {})
    return resolve_training_arguments(defaults, args, seed=seed, arguments_class=TZSLTrainingArguments)
