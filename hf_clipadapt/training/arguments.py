"""`AdaptationTrainingArguments`: `transformers.TrainingArguments` with defaults that
suit adapting a small part of a model, plus the SGD settings CLIP methods use.

What changes against `TrainingArguments`, and why:

* `output_dir` may be left out. A run that saves nothing (`save_strategy="no"`,
  the default here, and no Hub push) gets a fresh temporary folder that is
  removed at exit; asking for checkpoints without an `output_dir` is an error.
* `save_strategy="no"`: adaptation runs are short; checkpoints are asked for.
* `report_to="none"`, `remove_unused_columns=False` (method losses read columns
  the model's `forward` does not take, such as sample indices), `seed=0` (the
  package's one default seed), `ddp_find_unused_parameters=True` (a backbone
  often carries a head the adapted model never calls; DDP must tolerate it).
* `disable_tqdm` defaults to True when tqdm's stream (stderr) is not a terminal
  or `HF_CLIPADAPT_DISABLE_PROGRESS_BARS` is set, so logs stay free of bars.
* `use_cpu` defaults to True when no GPU/MPS/XPU is present, so that
  `accelerate launch` with several CPU processes forms one gloo group instead
  of independent copies of the job.
* `momentum` and `nesterov` for `optim="sgd"` (CoOp: SGD, lr 2e-3, momentum 0.9,
  weight decay 5e-4, cosine schedule). transformers reads SGD's momentum from the
  `optim_args` string; these fields are folded into it, so the optimizer is the
  one `Trainer` builds for `optim="sgd"`.
* `constant_warmup_lr`, `constant_warmup_epochs`, `schedule_epochs`: Dassl's
  `ConstantWarmupScheduler` in front of the cosine schedule (CoOp's configs:
  `WARMUP_EPOCH: 1`, `WARMUP_TYPE: "constant"`, `WARMUP_CONS_LR: 1e-5`). Dassl steps
  the rate once per epoch: epoch e < W runs at the constant rate, epoch e >= W at
  lr·(1 + cos(π(e − W)/E))/2 (`dassl/optim/lr_scheduler.py` L35-54 and L128-141,
  `WARMUP_RECOUNT=True`). `schedule_epochs` is E, the epochs that schedule counts
  (default: `num_train_epochs`); methods that train on cached views run fewer passes
  than E and map each step to the epoch of fresh images it stands for.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import TrainingArguments

from ..configuration_utils import DEFAULT_SEED, lookup_preset

__all__ = [
    "AdaptationTrainingArguments",
    "FeatureTrainingArguments",
    "check_overrides",
    "progress_bars_enabled",
    "resolve_training_arguments",
    "sgd_arguments",
    "split_global_batch",
]


def progress_bars_enabled() -> bool:
    """The package's one bar policy (`hf_clipadapt.progress`): a terminal, the main
    process, and neither `HF_CLIPADAPT_DISABLE_PROGRESS_BARS` nor transformers'
    `disable_progress_bar()`. Trainer itself shows bars on the main process only."""
    from ..progress import progress_enabled

    return progress_enabled(main_process=True)


def _has_accelerator() -> bool:
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def _temporary_output_dir() -> str:
    path = tempfile.mkdtemp(prefix="hf_clipadapt_run_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass
class AdaptationTrainingArguments(TrainingArguments):
    """`TrainingArguments` for adaptation methods (see the module docstring for the
    changed defaults). Method-specific arguments subclass this one."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Where checkpoints go. Optional when nothing is saved (a temporary folder)."}
    )
    save_strategy: str = field(default="no", metadata={"help": "'no' (default), 'steps', 'epoch' or 'best'."})
    report_to: str | list[str] | None = field(default="none", metadata={"help": "Trackers to log to."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Drop columns forward() does not take."})
    seed: int = field(default=DEFAULT_SEED, metadata={"help": "Random seed (the package default is 0)."})
    ddp_find_unused_parameters: bool | None = field(
        default=True, metadata={"help": "DDP tolerates parameters outside the loss (e.g. an unused backbone head)."}
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={"help": "Default: bars only on a terminal and without HF_CLIPADAPT_DISABLE_PROGRESS_BARS."},
    )
    use_cpu: bool | None = field(default=None, metadata={"help": "Default: True when no GPU/MPS/XPU is present."})
    momentum: float | None = field(default=None, metadata={"help": "SGD momentum (optim='sgd' only)."})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (optim='sgd' only)."})
    constant_warmup_lr: float | None = field(
        default=None,
        metadata={
            "help": "Dassl's constant warm-up: this rate for the first constant_warmup_epochs, "
            "then cosine over schedule_epochs (lr_scheduler_type='cosine' only)."
        },
    )
    constant_warmup_epochs: int = field(default=1, metadata={"help": "Epochs of the constant warm-up."})
    schedule_epochs: int | None = field(
        default=None, metadata={"help": "Epochs E the warm-up + cosine schedule counts (default num_train_epochs)."}
    )

    def __post_init__(self):
        if self.use_cpu is None:
            self.use_cpu = not _has_accelerator()
        if self.disable_tqdm is None:
            self.disable_tqdm = not progress_bars_enabled()
        if self.output_dir is None:
            if str(self.save_strategy) != "no" or self.push_to_hub:
                raise ValueError(
                    f"save_strategy={str(self.save_strategy)!r} (or push_to_hub) needs an output_dir for the "
                    "checkpoints: pass output_dir=..., or save_strategy='no'."
                )
            self.output_dir = _temporary_output_dir()
        self._fold_sgd_arguments()
        self._check_constant_warmup()
        super().__post_init__()
        if self.use_cpu:
            self.dataloader_pin_memory = False  # pinning needs an accelerator; it only warns on CPU

    @classmethod
    def method_defaults(cls) -> dict:
        """The fields whose defaults this class changes against `AdaptationTrainingArguments`:
        a method's official settings, as `{field: default}`."""
        from dataclasses import MISSING, fields

        def default(f):
            return f.default_factory() if f.default_factory is not MISSING else f.default

        base = {f.name: default(f) for f in fields(AdaptationTrainingArguments)}
        return {
            f.name: default(f) for f in fields(cls) if f.init and (f.name not in base or base[f.name] != default(f))
        }

    def check_trains_something(self) -> None:
        """A run of zero epochs (and no max_steps) trains nothing, yet `fit` would mark the
        model fitted: `train_model` (what every `fit` calls) refuses it. Not checked here,
        because an internal phase may be switched off with 0 epochs."""
        if (self.max_steps is None or self.max_steps <= 0) and not self.num_train_epochs > 0:
            raise ValueError(
                f"num_train_epochs={self.num_train_epochs!r} with no max_steps trains nothing, and fit would still mark "
                "the model fitted: pass num_train_epochs > 0 (or max_steps >= 1); to use the model as it is, skip fit."
            )

    def _check_constant_warmup(self) -> None:
        if self.constant_warmup_lr is None:
            return
        if str(self.lr_scheduler_type).split(".")[-1].lower() != "cosine":
            raise ValueError(
                f"constant_warmup_lr is Dassl's warm-up before a cosine schedule; got "
                f"lr_scheduler_type={self.lr_scheduler_type!r}: pass 'cosine' or drop constant_warmup_lr"
            )
        if self.constant_warmup_lr < 0 or self.constant_warmup_epochs < 0:
            raise ValueError("constant_warmup_lr and constant_warmup_epochs must be >= 0")
        if self.schedule_epochs is not None and self.schedule_epochs < 1:
            raise ValueError(f"schedule_epochs must be >= 1, got {self.schedule_epochs}")

    def _fold_sgd_arguments(self) -> None:
        """Put `momentum`/`nesterov` into `optim_args`, where transformers' SGD reads them."""
        if self.momentum is None and not self.nesterov:
            return
        if str(self.optim) != "sgd":
            raise ValueError(
                f"momentum/nesterov apply to optim='sgd', but optim={str(self.optim)!r}: pass optim='sgd' "
                "or drop momentum/nesterov."
            )
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov=True needs momentum > 0 (torch.optim.SGD refuses Nesterov without momentum)")
        given = dict(item.split("=", 1) for item in (self.optim_args or "").replace(" ", "").split(",") if item)
        ours = {"momentum": str(float(self.momentum or 0.0)), "nesterov": str(bool(self.nesterov))}
        for key, value in ours.items():
            if key in given and given[key].lower() != value.lower():
                raise ValueError(f"{key} is set twice: {key}={ours[key]} and optim_args {key}={given[key]}; keep one")
        given.update(ours)
        self.optim_args = ",".join(f"{k}={v}" for k, v in given.items())


@dataclass
class FeatureTrainingArguments(AdaptationTrainingArguments):
    """Arguments of a model trained on cached augmented views (`FeatureTrainedCLIPModel`).

    `epochs` are the paper's epochs of freshly augmented images; with `views` cached views per
    image, one pass over them sees as many images as `views` epochs, so `num_train_epochs`
    (passes) defaults to `epochs / views` and the warm-up + cosine schedule counts `epochs`.
    `epochs=None` takes the model's (`config.epochs`, else CoOp's rule by shot count).
    `PRESETS` (a class attribute): the method's named training presets, `from_preset(name)`.
    """

    PRESETS: ClassVar[dict] = {}

    num_train_epochs: float | None = field(
        default=None, metadata={"help": "Passes over the cached views (default: epochs / views)."}
    )
    epochs: int | None = field(
        default=None, metadata={"help": "The paper's epochs of fresh images (default: the model's config and shots)."}
    )
    preset: str | None = field(default=None, metadata={"help": "The named preset these values came from."})

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """The method's training settings of a named preset (`PRESETS`), any field overridden.

        Args:
            name: a key of `PRESETS` (case-insensitive).
            **overrides: any field of this class.
        """
        key, values = lookup_preset(cls.PRESETS, name, cls.__name__)
        return cls(**{**values, "preset": key, **overrides})


def sgd_arguments(**kwargs) -> dict:
    """Keyword arguments for an SGD run the way the CLIP few-shot papers train
    (CoOp: SGD, momentum 0.9, weight decay 5e-4, cosine schedule); any key can be overridden."""
    defaults = dict(optim="sgd", momentum=0.9, weight_decay=5e-4, lr_scheduler_type="cosine")
    return {**defaults, **kwargs}


def resolve_training_arguments(
    defaults: dict | None = None,
    args=None,
    *,
    seed: int = DEFAULT_SEED,
    num_samples: int | None = None,
    arguments_class=None,
    **fixed,
):
    """The arguments of one `fit`: the method's defaults, the run's seed, then `args` on top.

    Args:
        defaults: settings that depend on the model (e.g. epochs from its shot count), applied
            under `args`; the fixed official defaults are `arguments_class`'s field defaults.
        args: an `arguments_class` (or any `AdaptationTrainingArguments`, used as it is), a dict
            of overrides of the defaults, or None.
        seed: the run's seed (an `args` dict may override it).
        num_samples: the training set's size; the per-device batch never exceeds it.
        arguments_class: the method's `AdaptationTrainingArguments` subclass (default that class).
        **fixed: fields the method sets whatever `args` says (e.g. SFDA's `stage`).

    Raises:
        TypeError: `args` is neither arguments nor a dict.
        ValueError: a dict key that is no field of `arguments_class` (the message lists close names).
    """
    arguments_class = arguments_class or AdaptationTrainingArguments
    if isinstance(args, AdaptationTrainingArguments):
        return args
    overrides = check_overrides(args, arguments_class)
    settings = {**(defaults or {}), "seed": seed, **overrides, **fixed}
    if num_samples is not None:
        key = "per_device_train_batch_size"
        settings[key] = min(settings.get(key, _field_default(arguments_class, key)), num_samples)
    return arguments_class(**settings)


def _field_default(cls, name: str):
    from dataclasses import fields

    return next(f.default for f in fields(cls) if f.name == name)


def check_overrides(args, arguments_class) -> dict:
    """`args` as a dict of overrides of `arguments_class`'s fields; an unknown key is refused.

    Args:
        args: a dict (or None).
        arguments_class: the dataclass whose fields the keys must name.
    """
    import difflib
    from dataclasses import fields

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TypeError(
            f"args must be a {arguments_class.__name__} or a dict of its fields, got {type(args).__name__}"
        )
    known = {f.name for f in fields(arguments_class) if f.init}
    unknown = sorted(set(args) - known)
    if unknown:
        hints = {k: difflib.get_close_matches(k, known, n=2) for k in unknown}
        said = ", ".join(
            f"{k!r}" + (f" (did you mean {' or '.join(map(repr, h))}?)" if h else "") for k, h in hints.items()
        )
        raise ValueError(
            f"args has keys that are no {arguments_class.__name__} field: {said}. Pass fields of "
            f"{arguments_class.__name__} (dataclasses.fields lists them)."
        )
    return dict(args)


def split_global_batch(global_batch: int, world_size: int, accumulation_steps: int = 1) -> int:
    """The per-device batch that makes `global_batch` over `world_size` processes and
    `accumulation_steps` accumulation steps (SFDA's and TZSL's batch sizes are global).

    Args:
        global_batch: samples per optimizer step, over all processes.
        world_size: the number of processes.
        accumulation_steps: gradient accumulation steps per optimizer step.

    Raises:
        ValueError: the global batch does not divide evenly.
    """
    split = world_size * accumulation_steps
    if global_batch % split:
        raise ValueError(
            f"batch_size {global_batch} must divide by processes × accumulation steps = {split} "
            f"({world_size} × {accumulation_steps}): choose a multiple of {split}"
        )
    return global_batch // split
