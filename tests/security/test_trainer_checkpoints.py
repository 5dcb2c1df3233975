"""Issue 22, item 7: a Trainer checkpoint is complete or recognisably not, and resuming skips an
incomplete newest one (a kill while it was written) with a warning.

The tiny adapted model of tests/training. Before the completion mark, `resume_from_checkpoint=True`
picked the newest checkpoint-* folder whatever it held and failed with a bare FileNotFoundError.
"""

import shutil
import sys
from pathlib import Path

import pytest
import torch

from hf_clipadapt.training import AdaptationTrainingArguments, train_model
from hf_clipadapt.training.trainer import CHECKPOINT_COMPLETE, last_complete_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_tiny import RowsDataset, tiny_model, trained_weights  # noqa: E402


def _args(output_dir, **kwargs):
    return AdaptationTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        learning_rate=0.5,
        optim="sgd",
        momentum=0.9,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=3,
        logging_steps=1,
        **kwargs,
    )


def test_each_checkpoint_is_marked_complete_only_at_the_end(tmp_path):
    train_model(tiny_model(), RowsDataset(32), _args(tmp_path, num_train_epochs=2))
    for name in ("checkpoint-3", "checkpoint-6", "checkpoint-8"):
        folder = tmp_path / name
        assert (folder / CHECKPOINT_COMPLETE).is_file(), name
        newest = max(p.stat().st_mtime_ns for p in folder.iterdir() if p.name != CHECKPOINT_COMPLETE)
        assert (folder / CHECKPOINT_COMPLETE).stat().st_mtime_ns >= newest  # written after everything else


def test_an_incomplete_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    common = dict(num_train_epochs=2)
    full = tiny_model()
    train_model(full, RowsDataset(32), _args(tmp_path / "full", **common))

    run = tmp_path / "run"  # the same run, killed while it wrote checkpoint-8
    for name in ("checkpoint-3", "checkpoint-6", "checkpoint-8"):
        shutil.copytree(tmp_path / "full" / name, run / name)
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth", CHECKPOINT_COMPLETE):
        (run / "checkpoint-8" / name).unlink(missing_ok=True)  # the weights were written, the rest not yet
    with pytest.warns(UserWarning, match=r"skipping .*checkpoint-8.* save was interrupted"):
        assert last_complete_checkpoint(run) == str(run / "checkpoint-6")

    resumed = tiny_model(seed=123)
    resumed.frozen.load_state_dict(full.frozen.state_dict())
    with pytest.warns(UserWarning, match="checkpoint-8"):
        train_model(resumed, RowsDataset(32), _args(run, **common), resume_from_checkpoint=True)
    for name, value in trained_weights(full).items():
        assert torch.equal(trained_weights(resumed)[name], value), name  # resumed from checkpoint-6 exactly

    partial = tmp_path / "partial" / "checkpoint-8"
    shutil.copytree(tmp_path / "full" / "checkpoint-8", partial)
    (partial / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    (partial / CHECKPOINT_COMPLETE).unlink()
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint-8.*trainer_state.json"):
        train_model(
            tiny_model(), RowsDataset(32), _args(tmp_path / "other", **common), resume_from_checkpoint=str(partial)
        )
