"""The per-epoch plumbing of `SFDATrainer` (`hf_clipadapt.sfda.training`), kept in its own
module so the trainer's module stays within the size limit: the collate function and
loader through which the epoch reaches the sharded sampler and the augmentation view,
the method state a resume needs (saved as `sfda_state.pt`), and the callback that runs
the trainer's per-epoch hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

if TYPE_CHECKING:
    from .training import SFDATrainer


class _Collate:
    """(index, image, label) rows → {"pixel_values", "labels", "indices"}; `view` = epoch."""

    def __init__(self, transform):
        self.transform, self.view = transform, 0

    def __call__(self, batch):
        indices = torch.tensor([b[0] for b in batch])
        labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
        return {
            "pixel_values": self.transform([b[1] for b in batch], indices, self.view),
            "labels": labels,
            "indices": indices,
        }


class _EpochLoader(DataLoader):
    """A DataLoader whose `set_epoch` reaches its sharded sampler and the augmentation view
    (also shared by the loader Accelerate's `skip_first_batches` builds from it)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.collate_fn.view = epoch


class _MethodState:
    """Everything besides model, optimizer, scheduler and RNG that a resume needs."""

    def __init__(self):
        self.teacher_started = False
        self.pseudo: dict[str, torch.Tensor] = {}
        self.pseudo_epoch = -1
        self.history: list[dict] = []
        self.best_score, self.best_epoch, self.best_weights = None, None, None

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state) - set(self.__dict__)
        if unknown:
            raise ValueError(
                f"the SFDA method state holds unknown entries {sorted(unknown)}; it was written by another "
                "version: resume from a checkpoint of this one"
            )
        self.__dict__.update(state)


class _SFDAEpochCallback(TrainerCallback):
    """Calls the trainer's per-epoch and per-step hooks (Trainer's public extension point)."""

    def __init__(self, trainer: SFDATrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.begin_epoch()

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer.maybe_start_teacher()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer.end_epoch()
