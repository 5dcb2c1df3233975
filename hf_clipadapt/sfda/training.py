"""`fit` (stage 1 on labelled source data, stage 2 on unlabelled target data) and
`evaluate`, on the shared training path (`SFDATrainer`, a `transformers.Trainer`).

Data: a `datasets.Dataset` (or any map-style dataset of dicts) with an image
column and, for the source, a label column. `transform(images, indices, view)`
turns a list of PIL images into pixel values, as in `hf_clipadapt.features`; `view`
is the epoch during training, so augmentation can be seeded per (sample, epoch).

Distribution: run the script under `accelerate launch`; the sharded samplers keep
the global batch the same whatever the number of processes (see the test that
compares 2 processes with 1). BatchNorm normalises per rank, as DDP always does:
on GPUs convert the model with `torch.nn.SyncBatchNorm.convert_sync_batchnorm`
if you want global-batch statistics.

Checkpoints: Trainer's (`output_dir/checkpoint-<step>` every `save_steps`), plus
`sfda_state.pt` (EMA teacher, pseudo-labels, selection history); resume with
`resume_from=<checkpoint folder>` (or True: the last one in `output_dir`).
"""

from __future__ import annotations

from pathlib import Path

from .arguments import SFDATrainingArguments, legacy_training_defaults, preset_training_defaults
from .evaluation import check_closed_set_labels, dataset_labels, evaluate, predict_logits
from .trainer import SFDATrainer

__all__ = ["check_closed_set_labels", "evaluate", "fit", "predict_logits"]

# fit's keyword (the pre-Trainer API) → SFDATrainingArguments field
_KEYWORDS = {"epochs": "num_train_epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
             "seed": "seed", "num_workers": "dataloader_num_workers", "max_steps": "max_steps",
             "log_every": "logging_steps"}  # fmt: skip


def _check_source(labels, num_labels):
    if labels is None or (labels < 0).any():
        raise ValueError("stage 'source' needs a label for every source sample (a 'label' column of class ids)")
    bad = labels[labels >= num_labels].unique()
    if bad.numel():
        raise ValueError(f"source labels {bad.tolist()[:10]} are >= num_labels={num_labels}; build the model with every source class")


def training_arguments(model, stage: str, *, accelerator=None, checkpoint_dir=None, checkpoint_every: int = 0,
                       **keywords) -> SFDATrainingArguments:  # fmt: skip
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
    return SFDATrainingArguments(stage=stage, **kwargs)


def fit(model, train_dataset, *, stage: str, transform, eval_transform=None, args: SFDATrainingArguments | None = None,
        validation_dataset=None, image_column: str = "image", label_column: str | None = "label",
        resume_from: str | Path | bool | None = None, **keywords) -> dict:  # fmt: skip
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
    trainer = SFDATrainer(model, args, train_dataset, transform=transform, eval_transform=eval_transform,
                          labels=labels, validation_dataset=validation_dataset, image_column=image_column,
                          label_column=label_column)  # fmt: skip
    trainer.train(resume_from_checkpoint=str(resume_from) if isinstance(resume_from, (str, Path)) else resume_from)
    if stage == "target":
        model.config.model_selection = args.model_selection  # recorded for the model card
    from ..modeling_utils import dataset_name_of

    model.config.dataset_name = dataset_name_of(train_dataset) or model.config.dataset_name  # the card's data
    return {"history": trainer.method.history, "selected_epoch": trainer.selected_epoch,
            "global_step": trainer.state.global_step, "log_history": trainer.state.log_history}  # fmt: skip


def _check_data(model, train_dataset, args, label_column, validation_dataset):
    """The stage's data requirements, checked before anything runs; returns the labels (or None)."""
    source, cfg = args.stage == "source", model.config
    if len(train_dataset) == 0:
        raise ValueError(
            f"the {args.stage} dataset is empty: stage '{args.stage}' needs "
            + ("labelled source images" if source else "unlabelled target images")
        )
    labels = dataset_labels(train_dataset, label_column)
    if source:
        _check_source(labels, cfg.num_labels)
    elif cfg.strategy != "universal":
        check_closed_set_labels(labels, cfg.num_labels)
    if args.model_selection == "labelled_target_validation" and not source and validation_dataset is None:
        raise ValueError("model_selection='labelled_target_validation' needs validation_dataset= (labelled target data)")
    return labels
