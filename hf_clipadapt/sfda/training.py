"""`fit` (stage 1 on labelled source data, stage 2 on unlabelled target data) and
`evaluate`, on the shared training path (`SFDATrainer`, a `transformers.Trainer`).

Data: a `datasets.Dataset` (or any map-style dataset of dicts) with an image
column and, for the source, a label column. `transform(images, indices, view)` (e.g. an
`SFDAImageTransform`, which `fit` records in the model) turns PIL images into pixel values.

Distribution: run the script under `accelerate launch`; the sharded samplers keep the global
batch the same whatever the number of processes (a test compares 2 processes with 1). BatchNorm
normalises per rank, as DDP always does: on GPUs convert the model with
`torch.nn.SyncBatchNorm.convert_sync_batchnorm` for global-batch statistics.

Checkpoints: Trainer's (`output_dir/checkpoint-<step>` every `save_steps`), plus `sfda_state.pt`
(EMA teacher, pseudo-labels, selection history); resume with `resume_from=<folder>` (True: the last).

`SFDATrainer`, both stages on the shared training path (`AdaptationTrainer`).
What is specific to the recipe (GeoNet 2023 two-stage SFDA, ICCV 2023 workshop):

* data: rows `(index, image, label)` turned into pixels by `transform(images,
  indices, view)` with `view` = the epoch, drawn by the sharded samplers of
  `hf_clipadapt.training.samplers` (class-balanced with replacement for the source,
  a shuffled pass for the target). The loader is not re-sharded by Accelerate: every
  rank takes its block of one global draw, so the global batch does not depend on
  the number of processes;
* optimiser and schedule: backbone at `backbone_lr_ratio` of the head's learning
  rate, the classifier frozen in stage 2, lr·(1 + γp)^−power;
* losses in `compute_loss`: label-smoothing CE plus the soft CE to the EMA teacher
  (source); the strategy's pseudo-label loss (target);
* per-epoch method state, through `_SFDAEpochCallback` (`.epochs`): the EMA teacher (copied
  when its term starts, averaged at each epoch end), the target pseudo-labels (a full
  prediction pass at each epoch start) and model selection. It is saved beside every
  Trainer checkpoint (`sfda_state.pt`: tensors, numbers and strings only, read back with
  `torch.load(weights_only=True)`, which never runs pickled code), so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..configuration_utils import DEFAULT_SEED
from ..data.labels import adopt_class_names, dataset_name_of
from ..features import IndexedRows
from ..training.arguments import resolve_training_arguments
from ..training.samplers import ClassBalancedSampler, ShardedRandomSampler
from ..training.trainer import AdaptationTrainer, last_complete_checkpoint
from . import functional as SF
from .arguments import SFDATrainingArguments, legacy_training_defaults, preset_training_defaults
from .configuration_sfda import FIXED_LABEL_STRATEGIES
from .epochs import _Collate, _EpochLoader, _MethodState, _SFDAEpochCallback
from .evaluation import check_closed_set_labels, dataset_labels, evaluate, predict_logits
from .transforms import record_or_warn

METHOD_STATE_FILE = "sfda_state.pt"

__all__ = ["SFDATrainer", "check_closed_set_labels", "evaluate", "fit", "predict_logits", "pseudo_labels"]


class SFDATrainer(AdaptationTrainer):
    """One SFDA stage (`args.stage`) on `AdaptationTrainer`; `fit` is the usual entry point.

    `labels` are the source labels (stage "source", required) or None; `transform`
    makes training pixels, `eval_transform` those of the prediction passes.
    """

    def __init__(
        self,
        model,
        args,
        train_dataset,
        *,
        transform,
        eval_transform=None,
        labels=None,
        validation_dataset=None,
        image_column: str = "image",
        label_column: str | None = "label",
        **kwargs,
    ):
        self.source = args.stage == "source"
        self.transform, self.eval_transform = transform, eval_transform or transform
        self.labels, self.validation_dataset = labels, validation_dataset
        self.image_column, self.label_column = image_column, label_column
        self.method, self.teacher, self._epoch, self._last_loss = _MethodState(), None, 0, None
        model.head.classifier.requires_grad_(self.source)  # stage 2: the source hypothesis stays fixed
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self.add_callback(_SFDAEpochCallback(self))

    # ------------------------------------------------------------------ data
    @property
    def global_batch_size(self) -> int:
        a = self.args
        return a.per_device_train_batch_size * a.world_size * a.gradient_accumulation_steps

    def get_train_dataloader(self) -> DataLoader:
        a = self.args
        shard = dict(
            batch_size=a.per_device_train_batch_size,
            num_replicas=a.world_size,
            rank=a.process_index,
            seed=a.seed,
            accumulation_steps=a.gradient_accumulation_steps,
        )
        if self.source:
            sampler = ClassBalancedSampler(self.labels, **shard)
        else:
            sampler = ShardedRandomSampler(len(self.train_dataset), **shard)
        has_labels = self.labels is not None
        loader = _EpochLoader(
            IndexedRows(self.train_dataset, self.image_column, self.label_column if has_labels else None),
            batch_size=a.per_device_train_batch_size,
            sampler=sampler,
            collate_fn=_Collate(self.transform),
            num_workers=a.dataloader_num_workers,
            # its own generator: starting an epoch (or a resumed one) must not draw from the global
            # RNG, which the model's own randomness (dropout, stochastic depth) uses and checkpoints save
            generator=torch.Generator().manual_seed(a.seed),
        )
        self.steps_per_epoch = max(math.ceil(len(loader) / a.gradient_accumulation_steps), 1)
        self._loader = loader
        return loader

    # ------------------------------------------------------------------ optimiser
    def parameter_groups(self, model):
        return [
            {"params": list(model.backbone_parameters()), "lr_scale": self.args.backbone_lr_ratio},
            {"params": list(model.head_parameters(include_classifier=self.source))},
        ]

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The recipe's annealing lr·(1 + γp)^−power, p = step / total steps."""
        if self.lr_scheduler is None:
            total, gamma, power = max(num_training_steps, 1), self.args.lr_gamma, self.args.lr_power
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, lambda step: SF.lr_factor(step / total, gamma, power)
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ losses
    @property
    def progress(self) -> float:
        return self.state.global_step / max(self.state.max_steps, 1)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        out = model(pixel_values=inputs["pixel_values"])
        if self.source:
            loss = self._source_loss(out.logits, inputs["labels"], inputs["pixel_values"])
        else:
            loss = self._target_loss(out.logits, inputs["indices"])
        self._last_loss = loss.detach()
        return (loss, out) if return_outputs else loss

    def _source_loss(self, logits, labels, pixel_values):
        a = self.args
        loss = SF.label_smoothing_cross_entropy(logits, labels, self.model.config.label_smoothing)
        if self.teacher is not None and a.ema_weight > 0 and self.progress >= a.ema_start:
            with torch.no_grad():
                target = self.teacher(pixel_values=pixel_values).logits.softmax(-1)
            loss = loss + a.ema_weight * SF.soft_cross_entropy(logits, target)
        return loss

    def _target_loss(self, logits, idx):
        a, pseudo, strategy = self.args, self._pseudo_on_device, self.model.config.strategy
        if strategy == "universal":
            return SF.universal_loss(
                logits,
                pseudo["labels"][idx],
                pseudo["weights"][idx],
                self.progress,
                delta=a.universal_delta,
                entropy_weight=a.universal_entropy_weight,
            )
        if strategy == "centroid":  # GeoImNet: no IM term
            return a.pseudo_label_weight * F.cross_entropy(logits, pseudo["labels"][idx])
        if strategy == "topk_ce":  # GeoPlace: no IM term
            return SF.topk_cross_entropy_loss(logits, pseudo["candidates"][idx], a.topk_weights)
        im = SF.information_maximization_loss(logits)
        if strategy == "shot":
            return a.pseudo_label_weight * F.cross_entropy(logits, pseudo["labels"][idx]) + im
        return SF.topk_pseudo_label_loss(logits, pseudo["candidates"][idx], a.pseudo_label_weight) + im

    # ------------------------------------------------------------------ method state hooks
    def begin_epoch(self) -> None:
        self._epoch = self.state.global_step // self.steps_per_epoch
        # Trainer's own set_epoch call misses the loader it rebuilds to skip batches on resume
        self._loader.set_epoch(self._epoch)
        m = self.method
        if not self.source and m.pseudo_epoch != self._epoch:
            fixed = self.model.config.strategy in FIXED_LABEL_STRATEGIES and bool(m.pseudo)  # labels never change
            logits = None
            if not fixed:
                logits, feats, _ = self.predict_pass()
                m.pseudo = pseudo_labels(self.model.config, self.args, logits.float(), feats.float(), m.pseudo)
            self.select(self._epoch, logits)  # epoch 0 scores the source model itself
            m.pseudo_epoch = self._epoch
        if not self.source:
            self._pseudo_on_device = {k: v.to(self.args.device) for k, v in m.pseudo.items()}

    def maybe_start_teacher(self) -> None:
        if self.teacher is not None and not self.method.teacher_started and self.progress >= self.args.ema_start:
            self.teacher.load_state_dict(self.model.state_dict())
            self.method.teacher_started = True

    def end_epoch(self) -> None:
        if self.state.global_step % self.steps_per_epoch:
            return  # stopped inside the epoch (max_steps): no end-of-epoch update, as before
        if self.teacher is not None and self.method.teacher_started:  # parameters only, unless ema_average_buffers
            view = (lambda m: m.state_dict().values()) if self.args.ema_average_buffers else (lambda m: m.parameters())
            SF.ema_update_(view(self.teacher), view(self.model), self.args.ema_decay)
        loss = self._last_loss.item() if self._last_loss is not None else float("nan")
        self.method.history.append({"epoch": self._epoch + 1, "loss": loss})

    def predict_pass(self):
        return predict_logits(
            self.model,
            self.train_dataset,
            self.eval_transform,
            accelerator=self.accelerator,
            batch_size=self.global_batch_size,
            image_column=self.image_column,
            label_column=None,
        )

    def select(self, epoch_done: int, logits=None) -> None:
        """Model selection after `epoch_done` epochs (target stage only)."""
        rule, m = self.args.model_selection, self.method
        if self.source or rule == "last":
            return
        if rule == "im_loss":
            if logits is None:
                logits = self.predict_pass()[0]
            score = -SF.information_maximization_loss(logits.float()).item()
        else:
            metrics = evaluate(
                self.model,
                self.validation_dataset,
                transform=self.eval_transform,
                accelerator=self.accelerator,
                batch_size=self.global_batch_size,
                image_column=self.image_column,
                label_column=self.label_column or "label",
            )
            score = metrics.get("h_score", metrics.get("accuracy"))
        score = float(score)  # a plain number: the state is saved as data only (see _save_checkpoint)
        m.history.append({"epoch": epoch_done, "selection_score": score})
        if m.best_score is None or score > m.best_score:
            m.best_score, m.best_epoch = score, epoch_done
            m.best_weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    # ------------------------------------------------------------------ train, checkpoints
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Trainer's `train`, with the teacher built, method state restored on resume,
        and at the end the final model selection and the classifier unfrozen again."""
        if resume_from_checkpoint is True:
            # the newest checkpoint whose save finished; an interrupted newer one is skipped with a warning
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
        if self.source:  # a copy of the model that never gets gradients
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.method.teacher_started = self.args.ema_teacher_init == "copy_at_start"
        if resume_from_checkpoint:
            self._load_method_state(Path(resume_from_checkpoint))
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
            self._finish()
        finally:
            self.model.head.classifier.requires_grad_(True)
        return output

    def _finish(self) -> None:
        if self.state.global_step % self.steps_per_epoch == 0:  # not stopped inside an epoch
            self.select(self.state.global_step // self.steps_per_epoch)
        m = self.method
        self.selected_epoch = math.ceil(self.state.global_step / self.steps_per_epoch)
        if m.best_weights is not None:
            self.model.load_state_dict(m.best_weights)
            self.selected_epoch = m.best_epoch

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            extra = {
                "method": self.method.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher else None,
            }
            tmp = folder / (METHOD_STATE_FILE + ".tmp")
            torch.save(extra, tmp)
            os.replace(tmp, folder / METHOD_STATE_FILE)  # whole or absent

    def _load_method_state(self, folder: Path) -> None:
        path = folder / METHOD_STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} holds no {METHOD_STATE_FILE} (the teacher and pseudo-labels of the run): it is not an "
                "SFDA checkpoint, or its save was interrupted. Resume from another checkpoint-* folder."
            )
        try:  # data only: a pickled object in a resume folder is refused, never run
            extra = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch's UnpicklingError on any object that is not plain data
            raise OSError(
                f"{path} is not a data-only SFDA state (tensors, numbers, strings): it is refused, since "
                f"unpickling it could run code. Resume from a checkpoint this version wrote. ({e})"
            ) from e
        self.method.load_state_dict(extra["method"])
        if self.teacher is not None and extra["teacher"] is not None:
            self.teacher.load_state_dict(extra["teacher"])


def pseudo_labels(config, args, logits, feats, previous: dict) -> dict:
    """The target stage's pseudo-labels for every sample, from a full prediction pass."""
    probs = logits.softmax(-1)
    if config.strategy == "universal":
        return {"labels": probs.argmax(1), "weights": SF.confidence_weights(probs)}
    if previous and config.strategy in FIXED_LABEL_STRATEGIES:  # fixed from the source model
        return previous
    if config.strategy in ("shot", "centroid"):
        return {"labels": SF.shot_pseudo_labels(feats, probs, rounds=args.shot_rounds, threshold=args.shot_threshold)}
    return {"candidates": SF.topk_candidates(probs, args.topk)}


# fit's keyword (the pre-Trainer API) → SFDATrainingArguments field
_KEYWORDS = {
    "epochs": "num_train_epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "seed": "seed",
    "num_workers": "dataloader_num_workers",
    "max_steps": "max_steps",
    "log_every": "logging_steps",
}


def _check_source(labels, num_labels):
    if labels is None or (labels < 0).any():
        raise ValueError("stage 'source' needs a label for every source sample (a 'label' column of class ids)")
    bad = labels[labels >= num_labels].unique()
    if bad.numel():
        raise ValueError(
            f"source labels {bad.tolist()[:10]} are >= num_labels={num_labels}; build the model with every source class"
        )


def training_arguments(
    model, stage: str, *, accelerator=None, checkpoint_dir=None, checkpoint_every: int = 0, **keywords
) -> SFDATrainingArguments:
    """SFDATrainingArguments from `fit`'s keywords, over the model config's legacy training
    settings (if it still holds any), over its preset's (`SFDAConfig.from_preset`).
    `accelerator` gives the gradient accumulation steps."""
    preset = getattr(model.config, "preset", None)
    kwargs = preset_training_defaults(preset, stage) if preset else {}
    kwargs.update(legacy_training_defaults(getattr(model.config, "_legacy_training", {}), stage))
    kwargs.update({_KEYWORDS.get(k, k): v for k, v in keywords.items() if v is not None})
    if accelerator is not None:
        kwargs.setdefault("gradient_accumulation_steps", accelerator.gradient_accumulation_steps)
    if checkpoint_dir is not None and checkpoint_every:
        kwargs.update(output_dir=str(checkpoint_dir), save_strategy="steps", save_steps=checkpoint_every)
    return resolve_training_arguments(
        None, kwargs, seed=kwargs.pop("seed", DEFAULT_SEED), arguments_class=SFDATrainingArguments, stage=stage
    )


def fit(
    model,
    train_dataset,
    *,
    stage: str,
    transform,
    eval_transform=None,
    args: SFDATrainingArguments | None = None,
    validation_dataset=None,
    image_column: str = "image",
    label_column: str | None = "label",
    resume_from: str | Path | bool | None = None,
    **keywords,
) -> dict:
    """Train one stage of the recipe in place; returns {"history", "selected_epoch", "global_step", "log_history"}.

    stage="source": class-balanced re-sampling, label-smoothing CE, soft CE to the
        per-epoch EMA teacher from `args.ema_start` of training on.
    stage="target": classifier frozen, `config.strategy` ("universal", "shot",
        "topk", "centroid", "topk_ce"); pseudo-labels from a full prediction pass at the
        start of each epoch ("topk", "centroid", "topk_ce": once, from the source model). `args.model_selection` picks the
        returned weights: "last" (default), "im_loss" (unsupervised), or
        "labelled_target_validation" (needs `validation_dataset` with labels).

    Settings come from `args` (`SFDATrainingArguments`), or from keywords: its fields,
    or the older names `epochs`, `batch_size` (the global batch), `learning_rate`,
    `seed`, `num_workers`, `max_steps`, `log_every`, `accelerator` (its accumulation
    steps), `checkpoint_dir` + `checkpoint_every` (Trainer checkpoints every that many
    optimizer steps). `resume_from` is a checkpoint folder (or True: the last one).
    """
    if args is not None and keywords:
        raise TypeError(f"pass the settings either in args or as keywords, not both (got {sorted(keywords)})")
    args = args if args is not None else training_arguments(model, stage, **keywords)
    if args.stage != stage:
        raise ValueError(f"fit(stage={stage!r}) got SFDATrainingArguments(stage={args.stage!r})")
    labels = _check_data(model, train_dataset, args, label_column, validation_dataset)
    trainer = SFDATrainer(
        model,
        args,
        train_dataset,
        transform=transform,
        eval_transform=eval_transform,
        labels=labels,
        validation_dataset=validation_dataset,
        image_column=image_column,
        label_column=label_column,
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if isinstance(resume_from, (str, Path)) else resume_from)
    model.config.is_fitted = True
    model.eval()  # as from_pretrained gives it: BatchNorm's running statistics, no drop-path
    record_or_warn(model, eval_transform if eval_transform is not None else transform)
    if stage == "target":
        model.config.model_selection = args.model_selection  # recorded for the model card
    model.config.dataset_name = dataset_name_of(train_dataset) or model.config.dataset_name  # the card's data
    return {
        "history": trainer.method.history,
        "selected_epoch": trainer.selected_epoch,
        "global_step": trainer.state.global_step,
        "log_history": trainer.state.log_history,
    }


def _check_data(model, train_dataset, args, label_column, validation_dataset):
    """The stage's data requirements, checked before anything runs; returns the labels (or None).
    A source model built from `num_labels` alone takes the source's `ClassLabel` names."""
    source, cfg = args.stage == "source", model.config
    if len(train_dataset) == 0:
        need = "labelled source images" if source else "unlabelled target images"
        raise ValueError(f"the {args.stage} dataset is empty: stage '{args.stage}' needs {need}")
    labels = dataset_labels(train_dataset, label_column)
    if source:
        _check_source(labels, cfg.num_labels)
        adopt_class_names(cfg, train_dataset, label_column)
    elif cfg.strategy != "universal":
        check_closed_set_labels(labels, cfg.num_labels)
    if args.model_selection == "labelled_target_validation" and not source and validation_dataset is None:
        raise ValueError(
            "model_selection='labelled_target_validation' needs validation_dataset= (labelled target data)"
        )
    return labels
