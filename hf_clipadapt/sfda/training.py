"""`fit` (stage 1 on labelled source data, stage 2 on unlabelled target data) and
`evaluate`, on Accelerate.

Data: a `datasets.Dataset` (or any map-style dataset of dicts) with an image
column and, for the source, a label column. `transform(images, indices, view)`
turns a list of PIL images into pixel values, as in `hf_clipadapt.features`; `view`
is the epoch during training, so augmentation can be seeded per (sample, epoch).

Distribution: the loader is NOT passed through `accelerator.prepare`; the
samplers in `sampler.py` shard one global draw across ranks themselves, so the
global batch is the same whatever the number of processes (see the test that
compares 2 processes with 1). BatchNorm normalises per rank, as DDP always does:
on GPUs convert the model with `torch.nn.SyncBatchNorm.convert_sync_batchnorm`
if you want global-batch statistics.

Checkpoints: `checkpoint_dir` + `checkpoint_every` (optimizer steps) write
`accelerator.save_state` folders atomically (written as `*.tmp`, then renamed),
plus `sfda_state.pt` (epoch, step, EMA teacher, pseudo-labels, history);
`resume_from=<folder>` restores them and skips the batches already seen in the
current epoch with `skip_first_batches`.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator, skip_first_batches
from torch.utils.data import DataLoader

from ..features import _Indexed, extract_features
from ..metrics import accuracy, h_score, per_class_accuracy, topk_accuracy
from ..progress import progress_bar
from . import functional as SF
from .sampler import ClassBalancedSampler, ShardedRandomSampler

STAGES = ("source", "target")


def _labels(dataset, label_column: str | None) -> torch.Tensor | None:
    if label_column is None:
        return None
    names = getattr(dataset, "column_names", None)
    if names is not None and label_column not in names:
        return None
    values = list(dataset[label_column]) if names is not None else [row[label_column] for row in dataset]
    return torch.as_tensor(values, dtype=torch.long)


def check_closed_set_labels(labels: torch.Tensor | None, num_labels: int, what: str = "target") -> None:
    """Closed-set mode: every (known) target label must be a source class."""
    if labels is None:
        return
    bad = labels[(labels >= num_labels) | (labels < -1)].unique()
    if bad.numel():
        raise ValueError(
            f"{what} labels {bad.tolist()[:10]} fall outside the {num_labels} source classes (0..{num_labels - 1}). "
            "Closed-set adaptation (strategy 'shot' or 'topk') assumes the target holds only source classes: "
            "use strategy='universal' for target-private classes, or drop those samples."
        )


class _Collate:
    """(index, image, label) rows → (pixel_values, labels, indices); `view` = epoch."""

    def __init__(self, transform):
        self.transform, self.view = transform, 0

    def __call__(self, batch):
        indices = torch.tensor([b[0] for b in batch])
        labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
        return self.transform([b[1] for b in batch], indices, self.view), labels, indices


@torch.no_grad()
def predict_logits(model, dataset, transform, *, accelerator=None, batch_size: int = 64,
                   image_column: str = "image", label_column: str | None = "label"):  # fmt: skip
    """Logits [N, C], bottleneck features [N, d] and labels [N] (−1 when absent) for a
    whole dataset, in eval mode, sharded over processes and gathered in order."""
    model = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = model.training
    model.eval()
    num_labels = model.config.num_labels
    has_labels = _labels(dataset, label_column) is not None

    def encode(pixel_values):
        out = model(pixel_values=pixel_values.to(model.device))
        return torch.cat([out.logits, out.features], dim=1)

    try:
        out, labels = extract_features(
            encode, dataset, transform, batch_size=batch_size, accelerator=accelerator,
            image_column=image_column, label_column=label_column if has_labels else None, desc="predict",
        )  # fmt: skip
    finally:
        model.train(was_training)
    return out[:, :num_labels], out[:, num_labels:], labels


def evaluate(model, dataset, *, transform, accelerator=None, batch_size: int = 64,
             image_column: str = "image", label_column: str = "label") -> dict:  # fmt: skip
    """Closed set: top-1 / top-3 / mean per-class accuracy (%). Universal mode: the
    H-score, with every label outside the source classes pooled as "unknown"."""
    logits, _, labels = predict_logits(model, dataset, transform, accelerator=accelerator, batch_size=batch_size,
                                       image_column=image_column, label_column=label_column)  # fmt: skip
    if (labels < 0).all():
        raise ValueError(f"evaluate needs labels: the dataset has no usable {label_column!r} column")
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    num_labels = unwrapped.config.num_labels
    if unwrapped.is_universal:
        unknown = unwrapped.config.unknown_index
        y = torch.where((labels >= num_labels) | (labels < 0), torch.full_like(labels, unknown), labels)
        preds = unwrapped.decide(logits)
        scores = h_score(preds, y, unknown_index=unknown)
        known = y != unknown
        closed = accuracy(logits[known], y[known]) if known.any() else 0.0
        return {"h_score": scores["H"], "known_accuracy": scores["known"], "unknown_accuracy": scores["unknown"],
                "closed_set_accuracy_on_known": closed}  # fmt: skip
    check_closed_set_labels(labels, num_labels, "evaluation")
    return {
        "accuracy": accuracy(logits, labels),
        "top3_accuracy": topk_accuracy(logits, labels, k=3),
        "per_class_accuracy": per_class_accuracy(logits, labels),
    }


class _TrainState:
    """Everything besides model/optimizer/RNG that a resume needs."""

    def __init__(self):
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.pseudo: dict[str, torch.Tensor] = {}
        self.pseudo_epoch = -1
        self.best_score, self.best_epoch, self.best_weights = None, None, None
        self.teacher_started = False

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def _save_checkpoint(accelerator, checkpoint_dir, state: _TrainState, teacher) -> Path:
    final = Path(checkpoint_dir) / f"step_{state.global_step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        extra = {"state": state.state_dict(), "teacher": teacher.state_dict() if teacher is not None else None}
        torch.save(extra, tmp / "sfda_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _check_source(labels, num_labels):
    if labels is None or (labels < 0).any():
        raise ValueError("stage 'source' needs a label for every source sample (a 'label' column of class ids)")
    bad = labels[labels >= num_labels].unique()
    if bad.numel():
        raise ValueError(f"source labels {bad.tolist()[:10]} are >= num_labels={num_labels}; build the model with every source class")


def fit(
    model,
    train_dataset,
    *,
    stage: str,
    transform,
    eval_transform=None,
    accelerator: Accelerator | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    validation_dataset=None,
    image_column: str = "image",
    label_column: str | None = "label",
    seed: int = 0,
    num_workers: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume_from: str | Path | None = None,
    max_steps: int | None = None,
    log_every: int = 10,
) -> dict:
    """Train one stage of the recipe in place; returns {"history", "selected_epoch", "global_step"}.

    stage="source": class-balanced re-sampling, label-smoothing CE, soft CE to the
        per-epoch EMA teacher from `config.ema_start` of training on.
    stage="target": classifier frozen, `config.strategy` ("universal", "shot",
        "topk"); pseudo-labels from a full prediction pass at the start of each epoch
        (topk: once, from the source model). `config.model_selection` picks the
        returned weights: "last" (default), "im_loss" (unsupervised), or
        "labelled_target_validation" (needs `validation_dataset` with labels).

    `batch_size` is the global batch (default `config.batch_size`), split over
    processes and `accelerator.gradient_accumulation_steps`. `max_steps` stops early
    (optimizer steps), e.g. for smoke tests.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    acc = accelerator if accelerator is not None else Accelerator()
    cfg = model.config
    source = stage == "source"
    if len(train_dataset) == 0:
        raise ValueError(
            f"the {stage} dataset is empty: stage '{stage}' needs "
            + ("labelled source images" if source else "unlabelled target images")
        )
    eval_transform = eval_transform or transform
    labels = _labels(train_dataset, label_column)
    if source:
        _check_source(labels, cfg.num_labels)
    elif cfg.strategy != "universal":
        check_closed_set_labels(labels, cfg.num_labels)
    if cfg.model_selection == "labelled_target_validation" and not source and validation_dataset is None:
        raise ValueError("model_selection='labelled_target_validation' needs validation_dataset= (labelled target data)")

    epochs = epochs or (cfg.source_epochs if source else cfg.target_epochs)
    global_batch = batch_size or cfg.batch_size
    world, accum = acc.num_processes, acc.gradient_accumulation_steps
    if global_batch % (world * accum):
        raise ValueError(f"batch_size {global_batch} must divide by processes × accumulation steps = {world * accum}")
    per_device = global_batch // (world * accum)
    shard = dict(batch_size=per_device, num_replicas=world, rank=acc.process_index, seed=seed)
    sampler = ClassBalancedSampler(labels, **shard) if source else ShardedRandomSampler(len(train_dataset), **shard)
    collate = _Collate(transform)
    loader = DataLoader(
        _Indexed(train_dataset, image_column, label_column if labels is not None else None),
        batch_size=per_device, sampler=sampler, collate_fn=collate, num_workers=num_workers,
        # its own generator: starting an epoch (or a resumed one) must not draw from the global
        # RNG, which the model's own randomness (dropout, stochastic depth) uses and save_state saves
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    steps_per_epoch = len(loader) // accum
    total_steps = epochs * steps_per_epoch

    # -- model, optimiser ---------------------------------------------------------------
    unwrapped = acc.unwrap_model(model)
    unwrapped.head.classifier.requires_grad_(source)  # stage 2: the source hypothesis stays fixed
    base_lr = learning_rate or (cfg.learning_rate if source else cfg.target_lr)
    groups = [
        {"params": [p for p in unwrapped.backbone_parameters() if p.requires_grad], "lr": base_lr * cfg.backbone_lr_ratio},
        {"params": list(unwrapped.head_parameters(include_classifier=source)), "lr": base_lr},
    ]
    for g in groups:
        g["initial_lr"] = g["lr"]
    optimizer = torch.optim.SGD(groups, lr=base_lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    model, optimizer = acc.prepare(unwrapped, optimizer)
    # the EMA teacher is a copy of the model (on its device) that never gets gradients. When it
    # starts is `config.ema_teacher_init`: "copy_at_ema_start" copies the student when the
    # soft-CE term switches on; "copy_at_start" copies it before training and averages every epoch
    teacher = copy.deepcopy(acc.unwrap_model(model)).eval().requires_grad_(False) if source else None

    state = _TrainState()
    state.teacher_started = cfg.ema_teacher_init == "copy_at_start"
    if resume_from is not None:
        acc.load_state(str(resume_from))
        extra = torch.load(Path(resume_from) / "sfda_state.pt", map_location="cpu", weights_only=False)
        state.load_state_dict(extra["state"])
        if teacher is not None and extra["teacher"] is not None:
            teacher.load_state_dict(extra["teacher"])

    def predict_pass():
        return predict_logits(model, train_dataset, eval_transform, accelerator=acc, batch_size=global_batch,
                              image_column=image_column, label_column=None)  # fmt: skip

    def select(epoch_done: int, logits=None):
        """Model selection after `epoch_done` epochs (target stage only)."""
        if source or cfg.model_selection == "last":
            return
        if cfg.model_selection == "im_loss":
            if logits is None:
                logits = predict_pass()[0]
            score = -SF.information_maximization_loss(logits.float()).item()
        else:
            metrics = evaluate(model, validation_dataset, transform=eval_transform, accelerator=acc, batch_size=global_batch,
                               image_column=image_column, label_column=label_column or "label")  # fmt: skip
            score = metrics.get("h_score", metrics.get("accuracy"))
        state.history.append({"epoch": epoch_done, "selection_score": score})
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_epoch = score, epoch_done
            state.best_weights = {k: v.detach().cpu().clone() for k, v in acc.unwrap_model(model).state_dict().items()}

    is_main = acc.is_local_main_process
    stop = False
    for epoch in range(state.epoch, epochs):
        sampler.set_epoch(epoch)
        collate.view = epoch
        if not source and state.pseudo_epoch != epoch:
            fixed = cfg.strategy == "topk" and "candidates" in state.pseudo  # topk labels never change
            logits = feats = None
            if not fixed:
                logits, feats, _ = predict_pass()
                state.pseudo = _pseudo_labels(cfg, logits.float(), feats.float(), state.pseudo)
            select(epoch, logits)  # epoch 0 scores the source model itself
            state.pseudo_epoch = epoch
        pseudo = {k: v.to(acc.device) for k, v in state.pseudo.items()}
        model.train()
        skip = state.step_in_epoch * accum
        batches = skip_first_batches(loader, skip) if skip else loader
        bar = progress_bar(batches, total=len(loader), initial=skip, main_process=is_main, desc=f"{stage} epoch {epoch + 1}/{epochs}")
        for pixel_values, y, idx in bar:
            progress = state.global_step / max(total_steps, 1)
            if source and not state.teacher_started and progress >= cfg.ema_start:
                teacher.load_state_dict(acc.unwrap_model(model).state_dict())
                state.teacher_started = True
            with acc.accumulate(model):
                out = model(pixel_values=pixel_values.to(acc.device))
                if source:
                    loss = _source_loss(cfg, out.logits, y.to(acc.device), teacher, pixel_values.to(acc.device), progress)
                else:
                    loss = _target_loss(cfg, out.logits, pseudo, idx.to(acc.device), progress)
                acc.backward(loss)
                if acc.sync_gradients:
                    factor = SF.lr_factor(progress, cfg.lr_gamma, cfg.lr_power)
                    for g in optimizer.param_groups:
                        g["lr"] = g["initial_lr"] * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not acc.sync_gradients:
                continue
            state.global_step += 1
            state.step_in_epoch += 1
            if state.global_step % log_every == 0 or state.global_step == 1:
                record = {f"{stage}/loss": loss.item(), f"{stage}/lr": optimizer.param_groups[-1]["lr"], "epoch": epoch}
                acc.log(record, step=state.global_step)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if checkpoint_dir is not None and checkpoint_every and state.global_step % checkpoint_every == 0:
                _save_checkpoint(acc, checkpoint_dir, state, teacher)
            if max_steps is not None and state.global_step >= max_steps:
                stop = True
                break
        bar.close()
        if stop:
            break
        state.epoch, state.step_in_epoch = epoch + 1, 0
        if source and state.teacher_started:  # per-epoch EMA teacher, BatchNorm statistics included
            SF.ema_update_(teacher.state_dict().values(), acc.unwrap_model(model).state_dict().values(), cfg.ema_decay)
        state.history.append({"epoch": epoch + 1, "loss": loss.item()})

    if not stop:
        select(epochs)
    selected = epochs
    if state.best_weights is not None:
        acc.unwrap_model(model).load_state_dict(state.best_weights)
        selected = state.best_epoch
    acc.unwrap_model(model).head.classifier.requires_grad_(True)
    acc.free_memory()
    return {"history": state.history, "selected_epoch": selected, "global_step": state.global_step}


def _source_loss(cfg, logits, labels, teacher, pixel_values, progress):
    loss = SF.label_smoothing_cross_entropy(logits, labels, cfg.label_smoothing)
    if teacher is not None and cfg.ema_weight > 0 and progress >= cfg.ema_start:
        with torch.no_grad():
            target = teacher(pixel_values=pixel_values).logits.softmax(-1)
        loss = loss + cfg.ema_weight * SF.soft_cross_entropy(logits, target)
    return loss


def _pseudo_labels(cfg, logits, feats, previous: dict) -> dict:
    probs = logits.softmax(-1)
    if cfg.strategy == "universal":
        return {"labels": probs.argmax(1), "weights": SF.confidence_weights(probs)}
    if cfg.strategy == "shot":
        return {"labels": SF.shot_pseudo_labels(feats, probs, rounds=cfg.shot_rounds)}
    if "candidates" in previous:  # topk: fixed from the source model
        return previous
    return {"candidates": SF.topk_candidates(probs, cfg.topk)}


def _target_loss(cfg, logits, pseudo, idx, progress):
    if cfg.strategy == "universal":
        return SF.universal_loss(logits, pseudo["labels"][idx], pseudo["weights"][idx], progress,
                                 delta=cfg.universal_delta, entropy_weight=cfg.universal_entropy_weight)  # fmt: skip
    im = SF.information_maximization_loss(logits)
    if cfg.strategy == "shot":
        return cfg.pseudo_label_weight * F.cross_entropy(logits, pseudo["labels"][idx]) + im
    return SF.topk_pseudo_label_loss(logits, pseudo["candidates"][idx], cfg.pseudo_label_weight) + im
