"""`AdaptationTrainer`: the one training path of hf_clipadapt, a `transformers.Trainer`.

Checkpoints, exact resume (`train(resume_from_checkpoint=...)`), tqdm on the main
process, trackers (`report_to`), gradient accumulation, mixed precision and
DDP/FSDP/DeepSpeed all come from `Trainer`. What this subclass adds:

* a default loss, `model(**inputs).loss` (models return `.loss` when given
  `labels`, the transformers convention), and datasets of dicts or of tuples
  (`stack_collate`); a tuple batch is passed positionally;
* the optimizer sees only parameters that require grad, in the groups that
  `parameter_groups(model)` returns (override it; a group may carry `lr_scale`,
  a multiple of `args.learning_rate`) or else Trainer's decay/no-decay split;
* checkpoints hold what the model saves (`saved_state_dict()` of a
  `CLIPAdaptedModel`: the trained part, never the frozen CLIP), and resuming
  loads them without warning about the frozen tensors left out;
* the loss is taken as a per-batch mean, whatever the model's `forward`
  signature (Trainer would otherwise skip its gradient-accumulation scaling for
  models whose `forward` takes `**kwargs`);
* a checkpoint folder is marked complete (`CHECKPOINT_COMPLETE`) only once everything
  in it is written, subclasses' own files included; `train(resume_from_checkpoint=True)`
  resumes from the newest complete one and skips, with a warning, a newer one whose
  save was interrupted (`last_complete_checkpoint`), and a given path that is incomplete
  is refused with a clear error.

Method-specific state (pseudo-labels refreshed each epoch, an EMA teacher) is a
`TrainerCallback` or an override of `compute_loss`/`training_step`; see
`hf_clipadapt.sfda` and `hf_clipadapt.tzsl` for both kinds. A part trained by its own
optimizer inside `training_step` (a GAN's critic) averages its gradients over the
processes with `average_gradients`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .arguments import AdaptationTrainingArguments
from .collate import stack_collate

__all__ = [
    "AdaptationTrainer",
    "CHECKPOINT_COMPLETE",
    "constant_warmup_cosine",
    "constant_warmup_rates",
    "last_complete_checkpoint",
    "train_model",
]

# Written last into a checkpoint folder: without it (in a run that writes it) the save was interrupted.
CHECKPOINT_COMPLETE = "hf_clipadapt_checkpoint_complete.json"


class AdaptationTrainer(Trainer):
    """`transformers.Trainer` for adaptation methods (see the module docstring)."""

    def __init__(self, model=None, args: AdaptationTrainingArguments | None = None, data_collator=None, **kwargs):
        if args is None:
            args = AdaptationTrainingArguments()
        if model is not None and not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                f"{type(model).__name__} has no parameter that requires grad: there is nothing to train. "
                "Unfreeze the part to adapt (requires_grad_(True)) before training."
            )
        super().__init__(model=model, args=args, data_collator=data_collator or stack_collate, **kwargs)
        if self.args.disable_tqdm:
            # Trainer prints every log dict when bars are off; a fit() in a script or CI log
            # stays quiet (the logs still reach log_history and the trackers).
            self.remove_callback(PrinterCallback)
        if not hasattr(self.accelerator.unwrap_model(self.model), "accepts_loss_kwargs"):
            self.model_accepts_loss_kwargs = False  # our models' losses are per-batch means
        if self.args.device.type == "cpu":
            self.accelerator.free_memory = _free_references(self.accelerator)
        self._save_checkpoint = self._marked_complete(self._save_checkpoint)

    # ------------------------------------------------------------------ resume
    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """Trainer's `train`; `resume_from_checkpoint=True` takes the newest *complete*
        checkpoint of `args.output_dir`, and an incomplete one given by path is refused."""
        if resume_from_checkpoint is True:
            found = last_complete_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(
                    f"no complete checkpoint-* folder in {self.args.output_dir!r} to resume from; train "
                    "without resume_from_checkpoint, or pass a checkpoint folder"
                )
            resume_from_checkpoint = found
        elif resume_from_checkpoint and not isinstance(resume_from_checkpoint, bool):
            problem = _incomplete(Path(resume_from_checkpoint), require_marker=False)
            if problem is not None:
                raise ValueError(
                    f"cannot resume from {str(resume_from_checkpoint)!r}: {problem}. Resume from an "
                    "earlier checkpoint-* folder (or resume_from_checkpoint=True)"
                )
        if resume_from_checkpoint:
            self._check_same_model_type(Path(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _check_same_model_type(self, folder: Path) -> None:
        """A checkpoint of another method (CLIP-Adapter's, given to CoOp) fails deep in the
        optimizer's state loading ("parameter group" sizes); name the mismatch instead."""
        ours = getattr(getattr(self.model, "config", None), "model_type", None)
        saved = folder / "config.json"
        if not ours or not saved.is_file():
            return
        theirs = json.loads(saved.read_text(encoding="utf-8")).get("model_type")
        if theirs and theirs != ours:
            raise ValueError(
                f"cannot resume from {str(folder)!r}: that checkpoint was saved by a {theirs!r} model, and this is "
                f"a {ours!r} ({type(self.model).__name__}). Resume from a checkpoint of the same method, or train "
                "without resume_from_checkpoint."
            )

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        if self.compute_loss_func is not None or self.label_smoother is not None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
        if loss is None:
            fields = list(inputs) if isinstance(inputs, Mapping) else f"{len(inputs)} positional inputs"
            raise ValueError(
                f"{type(self.accelerator.unwrap_model(model)).__name__} returned no loss for a batch with {fields}: "
                "give the batches a 'labels' field, or subclass AdaptationTrainer and override compute_loss."
            )
        return (loss, outputs) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples, device):
        if not (self.model_accepts_loss_kwargs or self.compute_loss_func is not None):
            return None  # per-batch means: Trainer divides by the accumulation steps itself
        return super()._get_num_items_in_batch(batch_samples, device)

    def floating_point_ops(self, inputs) -> int:
        model = self.accelerator.unwrap_model(self.model)
        name = getattr(model, "main_input_name", None)
        if isinstance(inputs, Mapping) and name in inputs and hasattr(model, "floating_point_ops"):
            return model.floating_point_ops(inputs)
        return 0  # unknown for tuple batches or feature inputs; only used for the flos statistic

    # ------------------------------------------------------------------ optimiser
    def parameter_groups(self, model: torch.nn.Module) -> list[dict] | None:
        """Override to give the optimizer its parameter groups (e.g. a backbone at 0.1× the
        head's learning rate): dicts with "params" and optionally "lr_scale", "weight_decay".
        None (the default) keeps Trainer's grouping (no weight decay on biases and norms)."""
        return None

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        groups = self.parameter_groups(opt_model) if self.optimizer is None else None
        if groups is None:
            return super().create_optimizer(model)
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        kwargs = dict(kwargs)
        base_lr = kwargs.get("lr", self.args.learning_rate)
        built = []
        for group in groups:
            group = dict(group)
            params = [p for p in group.pop("params") if p.requires_grad]
            if params:
                scale = group.pop("lr_scale", 1.0)
                built.append(
                    {"weight_decay": self.args.weight_decay, **group, "params": params, "lr": base_lr * scale}
                )
        if not built:
            raise ValueError("parameter_groups() returned no parameter that requires grad: nothing to train")
        self.optimizer = optimizer_cls(built, **kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Trainer's scheduler, or Dassl's constant warm-up + cosine when
        `args.constant_warmup_lr` is set (see `constant_warmup_cosine`)."""
        a = self.args
        if a.constant_warmup_lr is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = self.optimizer if optimizer is None else optimizer
        epochs = a.schedule_epochs or max(1, round(a.num_train_epochs))
        self.lr_scheduler = constant_warmup_cosine(
            optimizer, num_training_steps, epochs, a.constant_warmup_lr, a.constant_warmup_epochs
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ parts outside the wrapped model
    def average_gradients(self, parameters) -> None:
        """Average the gradients of `parameters` over the processes. For a part trained with
        its own optimizer outside the model Trainer wraps in DDP (a GAN's critic), whose
        gradients DDP does not reduce. Every process must call it with the same parameters;
        a missing gradient counts as zero. A no-op on one process."""
        world = self.accelerator.num_processes
        if world == 1:
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            p.grad.div_(world)

    def broadcast_from_main(self, module: torch.nn.Module) -> None:
        """Copy the main process's parameters and buffers of `module` to every process (DDP
        does this for the wrapped model only). A no-op on one process."""
        if self.accelerator.num_processes == 1:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        # Trainer reloads a checkpoint's weights with a plain `load_state_dict`. transformers 5's
        # `save_pretrained` writes renamed weights (Swin's q_proj/k_proj...) under their original
        # checkpoint names, which that reload silently misses; so checkpoints keep the names in memory.
        self._in_checkpoint_save = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._in_checkpoint_save = False

    def _marked_complete(self, save_checkpoint):
        """Wrap the (most derived) `_save_checkpoint`: the folder's mark is removed before it is
        (re)written and written back, after an fsync of its files, once all of it is saved."""

        def save_and_mark(model, trial) -> None:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.should_save:
                (folder / CHECKPOINT_COMPLETE).unlink(missing_ok=True)
            save_checkpoint(model, trial)
            if self.args.should_save and folder.is_dir():
                from ..io import _fsync_tree

                _fsync_tree(folder)
                tmp = folder / (CHECKPOINT_COMPLETE + ".tmp")
                tmp.write_text(json.dumps({"global_step": self.state.global_step}), encoding="utf-8")
                os.replace(tmp, folder / CHECKPOINT_COMPLETE)

        return save_and_mark

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save through the model's own `save_pretrained` (for a `CLIPAdaptedModel`, its
        `saved_state_dict()`: the trained part); a `state_dict` gathered by FSDP/DeepSpeed is
        cut down to those keys."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not isinstance(model, PreTrainedModel):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        kwargs: dict[str, Any] = {"is_main_process": self.args.should_save}
        if getattr(self, "_in_checkpoint_save", False):
            kwargs["save_original_format"] = False
        if state_dict is not None:
            keep = set(model.saved_state_dict()) if hasattr(model, "saved_state_dict") else set(state_dict)
            kwargs["state_dict"] = {k: v for k, v in state_dict.items() if k in keep}
        if self.args.should_save:
            model.save_pretrained(output_dir, **kwargs)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _issue_warnings_after_load(self, load_result) -> None:
        """Resuming loads with strict=False: the frozen tensors the checkpoint leaves out
        are expected missing; any other missing key is still reported."""
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "saved_state_dict"):
            saved = set(model.saved_state_dict())
            missing = [k for k in load_result.missing_keys if k in saved]
            load_result = type(load_result)(missing, load_result.unexpected_keys)
        super()._issue_warnings_after_load(load_result)


def _incomplete(folder: Path, require_marker: bool) -> str | None:
    """Why `folder` is not a complete checkpoint, or None. Without the mark (a checkpoint from a
    version or a Trainer that does not write it), a readable trainer state, written last by
    Trainer, stands in for it, unless `require_marker` (the run writes marks)."""
    if (folder / CHECKPOINT_COMPLETE).is_file():
        return None
    if require_marker:
        return f"its save was interrupted (no {CHECKPOINT_COMPLETE}, which a complete checkpoint of this run has)"
    try:
        json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"it has no readable {TRAINER_STATE_NAME} (its save was interrupted, or it is not a checkpoint)"
    return None


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest checkpoint-* folder of `output_dir` whose save finished; a newer incomplete one
    is skipped with a warning. None if there is none."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        step = path.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        if path.name.startswith(PREFIX_CHECKPOINT_DIR + "-") and step.isdigit() and path.is_dir():
            found.append((int(step), path))
    found.sort(reverse=True)
    marked = any((path / CHECKPOINT_COMPLETE).is_file() for _, path in found)
    for _, path in found:
        problem = _incomplete(path, require_marker=marked)
        if problem is None:
            return str(path)
        warnings.warn(f"skipping {str(path)!r} when resuming: {problem}", UserWarning, stacklevel=3)
    return None


def _free_references(accelerator):
    """`Accelerator.free_memory` without its `gc.collect()`. Trainer calls it at the start of
    every `train()`; on CPU there is no device cache to clear, and a full collection costs about
    a second in a large process: more than a small method's whole training phase."""

    def free_memory(*objects):
        accelerator._schedulers, accelerator._optimizers, accelerator._models, accelerator._dataloaders = (
            [],
            [],
            [],
            [],
        )
        accelerator.step = 0
        return objects[0] if len(objects) == 1 else objects

    return free_memory


def constant_warmup_rates(
    num_steps: int, epochs: int, base_lr: float, warmup_lr: float, warmup_epochs: int = 1
) -> list[float]:
    """The rate of each of `num_steps` optimizer steps under Dassl's schedule of
    `epochs` epochs: step s belongs to epoch e = ⌊s·E/S⌋ (the epoch of fresh images it
    stands for), which runs at `warmup_lr` if e < W, else at base_lr·(1 + cos(π(e − W)/E))/2
    (KaiyangZhou/Dassl.pytorch `dassl/optim/lr_scheduler.py` L35-54, L128-141: the rate
    changes once per epoch, and the cosine restarts its count after the warm-up)."""
    rates = []
    for s in range(num_steps):
        e = s * epochs // max(1, num_steps)
        rates.append(
            warmup_lr if e < warmup_epochs else 0.5 * base_lr * (1 + math.cos(math.pi * (e - warmup_epochs) / epochs))
        )
    return rates


def constant_warmup_cosine(optimizer, num_steps: int, epochs: int, warmup_lr: float, warmup_epochs: int = 1):
    """A `LambdaLR` that runs `constant_warmup_rates` (each group scaled by its own base rate)."""

    def factor(step: int, base: float) -> float:
        s = min(step, num_steps - 1)
        e = s * epochs // max(1, num_steps)
        if e < warmup_epochs:
            return warmup_lr / base if base > 0 else 0.0
        return 0.5 * (1 + math.cos(math.pi * (e - warmup_epochs) / epochs))

    lambdas = [(lambda step, base=g["lr"]: factor(step, base)) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def train_model(
    model,
    train_dataset,
    args: AdaptationTrainingArguments | None = None,
    *,
    trainer_class: type[Trainer] = AdaptationTrainer,
    callbacks=None,
    resume_from_checkpoint: str | bool | None = None,
    **trainer_kwargs,
) -> list[dict]:
    """Train `model` in place on `train_dataset` with `trainer_class` and return the
    log history (`trainer.state.log_history`). The helper every `fit` calls;
    `trainer_kwargs` go to the trainer (e.g. `eval_dataset`, `data_collator`)."""
    if args is not None and hasattr(args, "check_trains_something"):
        args.check_trains_something()
    trainer = trainer_class(model=model, args=args, train_dataset=train_dataset, callbacks=callbacks, **trainer_kwargs)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer.state.log_history
