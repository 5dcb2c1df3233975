"""Checkpoints of CraFT's collaborative loop: everything an exact resume needs.

`state.pt` holds R, AdamW's moments, z, the generation, the queries spent and the
history (tensors and plain values, read back with `torch.load(weights_only=True)`).

The CMA-ES strategy is stored as data only, never pickled: `cmaes.safetensors` holds
the fitness values told to it in every generation ([G, λ] float64) and its mean after
the last one, `cmaes.json` its step size and the `cma` version. The `cma` package has
no data-only serialisation of a `CMAEvolutionStrategy` (its state is a graph of
objects: options, samplers, archives), but the search is deterministic given its
options, its private seeded sampler and the fitness values it is told, so a resume
rebuilds it by replaying ask/tell from a fresh strategy, and refuses the checkpoint
if the rebuilt mean or step size differ from the saved ones. A `cmaes.pkl` (written
by earlier versions) is never read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "craft-checkpoint"
_CHECKED = ("population", "sigma", "seed", "lambda_i", "lambda_o", "optimize_prompt", "train_refinement")


def save_loop_state(loop, output_dir) -> Path:
    """Write the loop's state to `output_dir/craft-checkpoint`, atomically (a crash mid-write
    leaves the previous checkpoint intact)."""
    target = Path(output_dir) / CHECKPOINT
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".craft-", dir=target.parent))
    torch.save(
        {
            "generation": loop.generation,
            "queries": loop.black_box.queries,
            "history": loop.history,
            "refiner": loop.model.refiner.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "z": loop.model.prompt.z.clone(),
            "fixed_outputs": loop._fixed_outputs,
        },
        tmp / "state.pt",
    )
    if loop.strategy is not None:
        save_strategy(loop.strategy, loop.cmaes_fitness, loop.args.population, tmp)
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
    differ = {
        k: (saved_args[k], getattr(loop.args, k)) for k in _CHECKED if saved_args.get(k) != getattr(loop.args, k)
    }
    if differ:
        raise ValueError(
            f"the checkpoint in {path} was made with other settings (saved, now): {differ}; resume "
            "with the same CraFTTrainingArguments"
        )
    state = torch.load(path / "state.pt", weights_only=True)
    loop.generation, loop.history = state["generation"], list(state["history"])
    loop.model.refiner.load_state_dict(state["refiner"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.model.prompt.z.copy_(state["z"])
    loop._fixed_outputs = state["fixed_outputs"]
    if loop.strategy is not None:
        loop.cmaes_fitness = load_fitness(path, loop.generation, loop.args.population)
        loop.strategy = rebuild_strategy(path, loop.model.prompt.dim, loop.args, loop.cmaes_fitness)
    # The user-side count of queries spent carries over (a remote owner keeps its own as well).
    loop.black_box.queries = max(loop.black_box.queries, int(state["queries"]))


# ---------------------------------------------------------------------- CMA-ES, data only
_STRATEGY_FORMAT = 1


def save_strategy(strategy, fitness: list[list[float]], population: int, folder: Path) -> None:
    """`cmaes.safetensors` (told fitness values [G, λ], mean) and `cmaes.json` (step size)."""
    import cma
    from safetensors.numpy import save_file

    # [G, λ], also for G = 0 (a run stopped before its first generation)
    told = np.asarray(fitness, dtype=np.float64).reshape(len(fitness), population)
    save_file(
        {"fitness": told, "mean": np.asarray(strategy.mean, dtype=np.float64)}, str(folder / "cmaes.safetensors")
    )
    meta = {
        "format": _STRATEGY_FORMAT,
        "cma_version": cma.__version__,
        "sigma": float(strategy.sigma),
        "generations": len(fitness),
    }
    (folder / "cmaes.json").write_text(json.dumps(meta, indent=1))


def load_fitness(folder: Path, generations: int, population: int) -> list[list[float]]:
    """The told fitness values, checked against the checkpoint's generation count."""
    from ..checkpoints import load_safetensors_numpy

    if not (folder / "cmaes.safetensors").is_file():
        old = (
            " (it holds a pickled cmaes.pkl from an earlier version, which is never read)"
            if (folder / "cmaes.pkl").exists()
            else ""
        )
        raise FileNotFoundError(
            f"{folder} holds no cmaes.safetensors, the CMA-ES state{old}; start the run again "
            "or resume from a checkpoint written by this version"
        )
    arrays = load_safetensors_numpy(folder / "cmaes.safetensors")
    told = arrays.get("fitness")
    if told is None or told.ndim != 2 or told.shape != (generations, population) or not np.isfinite(told).all():
        shape = None if told is None else told.shape
        raise ValueError(
            f"{folder}/cmaes.safetensors: fitness has shape {shape}, expected ({generations}, "
            f"{population}) finite values (one row per generation done); the checkpoint is damaged"
        )
    return told.tolist()


def rebuild_strategy(folder: Path, dim: int, args, fitness: list[list[float]]):
    """A fresh strategy with the same options, told the same fitness values again: the
    same state as the interrupted run (its candidates are redrawn by its seeded sampler)."""
    from ..checkpoints import load_safetensors_numpy
    from .training import new_strategy

    meta = json.loads((folder / "cmaes.json").read_text())
    if meta.get("format") != _STRATEGY_FORMAT:
        raise ValueError(
            f"{folder}/cmaes.json has format {meta.get('format')!r}; this version reads {_STRATEGY_FORMAT}"
        )
    strategy = new_strategy(dim, args)
    for values in fitness:
        strategy.tell(strategy.ask(), list(values))
    saved_mean = load_safetensors_numpy(folder / "cmaes.safetensors")["mean"]
    if saved_mean.shape != (dim,) or not (
        np.allclose(strategy.mean, saved_mean, rtol=1e-6, atol=1e-9)
        and np.isclose(strategy.sigma, meta.get("sigma", np.nan), rtol=1e-6)
    ):
        raise ValueError(
            f"the CMA-ES state rebuilt from {folder} does not match the saved one (saved with cma "
            f"{meta.get('cma_version')}; the replay differs): resume with the same cma version and settings"
        )
    return strategy
