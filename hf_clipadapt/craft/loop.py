"""CraFT's collaborative loop (Wang et al., ICML 2024): CMA-ES on the prompt, AdamW on R.

Per generation: one ask/tell of CMA-ES over z (λ queries, fitness L_I), then one
epoch of the refinement module R on the black box's outputs for the generation's
best candidate (loss L_O); budget // λ generations; the final prompt is the CMA-ES
mean. A checkpoint after every generation makes a run resumable exactly.

R is trained here with a plain AdamW loop, not with the package's
`AdaptationTrainer`: its "epoch" is a handful of steps on the N×K logits that the
black box returned in *this* generation, interleaved with CMA-ES 200 times a run. A
Trainer per generation would rebuild its optimizer, scheduler and dataloader each
time (losing AdamW's moments, which the paper carries across generations), and its
checkpoints would not hold the CMA-ES state the resume needs.
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import torch

from ..progress import progress_bar
from .arguments import CraFTTrainingArguments
from .checkpoint import load_loop_state, save_loop_state
from .refine import prompt_fitness, refinement_loss


class _Randn:
    """CMA-ES's normal sampler on a private NumPy generator: the search never touches or
    depends on NumPy's global random state, so a resume can replay it (`checkpoint`)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


def new_strategy(dim: int, args: CraFTTrainingArguments):
    import cma

    options = {"popsize": args.population, "seed": np.nan, "randn": _Randn(args.seed), "verbose": -9,
               "verb_log": 0, "verb_disp": 0, "maxiter": np.inf, "tolfun": 0, "tolx": 0, "tolstagnation": np.inf,
               "tolflatfitness": np.inf}  # fmt: skip  (no early stop: the budget decides; no log files)
    return cma.CMAEvolutionStrategy(np.zeros(dim), args.sigma, options)


class CollaborativeLoop:
    """Train a `CraFTModel`'s prompt (z) and refinement module R against a black box.

    Args:
        model: a `CraFTModel` (its `prompt` attached to `black_box`, its `refiner`).
        black_box: a `BlackBoxVLM`.
        pixel_values / labels: the labelled shots [N, 3, H, W], [N].
        args: `CraFTTrainingArguments`.
    """

    def __init__(self, model, black_box, pixel_values, labels, args: CraFTTrainingArguments | None = None):
        self.model, self.black_box = model, black_box
        self.args = args or CraFTTrainingArguments()
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.class_names = model.class_names()
        self.images = black_box.upload_images(pixel_values)
        available = black_box.remaining if self.args.budget is None else self.args.budget
        if available is not None and black_box.remaining is not None:
            available = min(available, black_box.remaining)
        self.generations = _plan(available, self.args)
        self.generation, self.history = 0, []
        self.strategy = new_strategy(model.prompt.dim, self.args) if self.args.optimize_prompt else None
        self.cmaes_fitness: list[list[float]] = []  # what was told each generation: rebuilds the strategy
        generator = torch.Generator().manual_seed(self.args.seed)
        model.refiner.reset_parameters(generator)
        self.optimizer = torch.optim.AdamW(model.refiner.parameters(), lr=self.args.learning_rate,
                                           weight_decay=self.args.weight_decay)  # fmt: skip
        self._fixed_outputs = None  # refinement-only: the initial prompt's scores, queried once

    # ------------------------------------------------------------------ one generation
    def _query(self, z: np.ndarray) -> torch.Tensor:
        contexts = self.model.prompt.contexts(z)
        return torch.from_numpy(self.black_box.query(contexts, self.images, self.class_names))

    def _prompt_step(self) -> tuple[torch.Tensor, np.ndarray]:
        """Ask λ candidates, score them (λ queries), tell CMA-ES their fitness L_I."""
        if self.strategy is None:
            if self._fixed_outputs is None:
                self._fixed_outputs = self._query(np.zeros((1, self.model.prompt.dim), np.float32))
            return self._fixed_outputs[0], np.zeros((0, self.model.prompt.dim))
        candidates = np.asarray(self.strategy.ask())
        y_i = self._query(candidates)
        with torch.no_grad():
            y_o = self.model.refiner(y_i) if self.args.train_refinement else y_i
            fitness = prompt_fitness(y_i, y_o, self.labels, self.args.lambda_i)
        self.strategy.tell(list(candidates), fitness.double().tolist())
        self.cmaes_fitness.append(fitness.double().tolist())
        self.model.prompt.z.copy_(torch.as_tensor(self.strategy.mean, dtype=torch.float32))
        return y_i[int(fitness.argmin())], candidates

    def _refine_epoch(self, y_i: torch.Tensor) -> float:
        """One epoch of AdamW on L_O over the shots, shuffled by (seed, generation)."""
        refiner = self.model.refiner.train()
        shuffle = torch.Generator().manual_seed(self.args.seed * 100_003 + self.generation)
        order = torch.randperm(len(y_i), generator=shuffle)
        total = 0.0
        for start in range(0, len(order), self.args.batch_size):
            idx = order[start : start + self.args.batch_size]
            loss = refinement_loss(refiner(y_i[idx]), y_i[idx], self.labels[idx], self.args.lambda_o)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(idx)
        refiner.eval()
        return total / len(order)

    def step(self) -> dict:
        """One generation; returns its record (queries spent, train accuracy, losses)."""
        y_i, candidates = self._prompt_step()
        loss_o = self._refine_epoch(y_i) if self.args.train_refinement else float("nan")
        with torch.no_grad():
            y_o = self.model.refiner(y_i) if self.args.train_refinement else y_i
        self.generation += 1
        record = {"generation": self.generation, "queries": self.black_box.queries, "loss_o": loss_o,
                  "train_accuracy": float((y_o.argmax(-1) == self.labels).float().mean() * 100)}  # fmt: skip
        self.history.append(record)
        self.last_candidates = candidates
        return record

    # ------------------------------------------------------------------ run
    def run(self, resume_from_checkpoint=None, max_generations: int | None = None):
        """Run the remaining generations (at most `max_generations` now); returns the model.

        If the black box becomes unreachable mid-run, the state before the failed
        generation is saved (to `args.output_dir`, or a new temporary folder) and the
        error says where: `run(resume_from_checkpoint=...)` then continues exactly."""
        if resume_from_checkpoint:
            load_loop_state(self, resume_from_checkpoint)
        todo = self.generations - self.generation
        todo = todo if max_generations is None else min(todo, max_generations)
        bar = progress_bar(total=todo, desc="CraFT generations")
        try:
            for _ in range(todo):
                record = self._guarded_step()
                if self.args.output_dir:
                    save_loop_state(self, self.args.output_dir)
                bar.update(1)
                bar.set_postfix(queries=record["queries"], train_acc=f"{record['train_accuracy']:.1f}")
        finally:
            bar.close()
        self.model.config.is_fitted = True
        return self.model

    def _guarded_step(self) -> dict:
        from .client import BlackBoxConnectionError

        # CMA-ES's ask() advances its sampler before the queries go out: keep the state from
        # before the generation, so a run stopped by a dropped connection resumes exactly.
        snapshot = copy.deepcopy(self.strategy)
        try:
            return self.step()
        except BlackBoxConnectionError as e:
            self.strategy = snapshot
            where = save_loop_state(self, self.args.output_dir or tempfile.mkdtemp(prefix="craft-run-"))
            raise BlackBoxConnectionError(
                f"{e}. The run stopped before generation {self.generation + 1} of {self.generations} "
                f"({self.black_box.queries} queries spent); its state is saved in {where}: resume with "
                f"run(resume_from_checkpoint={str(where)!r})"
            ) from e


def _plan(available: int | None, args: CraFTTrainingArguments) -> int:
    """Whole generations the budget allows; refuses a budget below one generation."""
    if available is None:
        raise ValueError("no budget: set CraFTTrainingArguments.budget or give the black box a budget")
    per_generation = args.population if args.optimize_prompt else 0
    if args.optimize_prompt and available < per_generation:
        raise ValueError(f"a budget of {available} queries is less than one CMA-ES generation ({per_generation} "
                         "queries, the population): raise the budget or lower the population")  # fmt: skip
    if not args.optimize_prompt:  # refinement-only: one query, then as many epochs as the full method gets
        if available < 1:
            raise ValueError("refinement-only needs one query for the initial prompt; the budget is 0")
        return max(1, available // args.population)
    return available // per_generation
