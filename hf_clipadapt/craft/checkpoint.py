"""Checkpoints of CraFT's collaborative loop: everything an exact resume needs.

`state.pt` holds R, AdamW's moments, z, the generation, the queries spent and the
history (tensors and plain values, read back with `torch.load(weights_only=True)`).
`cmaes.pkl` holds the CMA-ES strategy (mean, step size, covariance, evolution paths
and its private random generator): the `cma` package offers no other complete
serialisation, so it is pickled. It is only ever read from the user's own run
folder, never from a black box or a network (the server side never unpickles).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch

CHECKPOINT = "craft-checkpoint"
_CHECKED = ("population", "sigma", "seed", "lambda_i", "lambda_o", "optimize_prompt", "train_refinement")


def save_loop_state(loop, output_dir) -> Path:
    """Write the loop's state to `output_dir/craft-checkpoint`, atomically (a crash mid-write
    leaves the previous checkpoint intact)."""
    target = Path(output_dir) / CHECKPOINT
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".craft-", dir=target.parent))
    torch.save({
        "generation": loop.generation, "queries": loop.black_box.queries, "history": loop.history,
        "refiner": loop.model.refiner.state_dict(), "optimizer": loop.optimizer.state_dict(),
        "z": loop.model.prompt.z.clone(), "fixed_outputs": loop._fixed_outputs,
    }, tmp / "state.pt")  # fmt: skip
    if loop.strategy is not None:
        (tmp / "cmaes.pkl").write_bytes(pickle.dumps(loop.strategy))
    (tmp / "args.json").write_text(json.dumps(loop.args.to_dict(), indent=1))
    old = target.with_name(CHECKPOINT + ".old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def load_loop_state(loop, path) -> None:
    """Restore a loop from a checkpoint folder (or the run folder that holds one)."""
    path = Path(path)
    path = path / CHECKPOINT if (path / CHECKPOINT).is_dir() else path
    if not (path / "state.pt").is_file():
        raise FileNotFoundError(f"no CraFT checkpoint in {path} (expected state.pt); pass the run's output_dir")
    saved_args = json.loads((path / "args.json").read_text())
    differ = {k: (saved_args[k], getattr(loop.args, k)) for k in _CHECKED if saved_args.get(k) != getattr(loop.args, k)}
    if differ:
        raise ValueError(f"the checkpoint in {path} was made with other settings (saved, now): {differ}; resume "
                         "with the same CraFTTrainingArguments")  # fmt: skip
    state = torch.load(path / "state.pt", weights_only=True)
    loop.generation, loop.history = state["generation"], list(state["history"])
    loop.model.refiner.load_state_dict(state["refiner"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.model.prompt.z.copy_(state["z"])
    loop._fixed_outputs = state["fixed_outputs"]
    if loop.strategy is not None:
        loop.strategy = pickle.loads((path / "cmaes.pkl").read_bytes())  # the user's own file, see above
    # The user-side count of queries spent carries over (a remote owner keeps its own as well).
    loop.black_box.queries = max(loop.black_box.queries, int(state["queries"]))
