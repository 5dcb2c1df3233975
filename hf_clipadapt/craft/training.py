"""CraFT's collaborative loop (Wang et al., ICML 2024): CMA-ES on the prompt, Adam on R.

Per generation, as in mrflogs/CraFT main_craft.py lines 196-224:
1. one ask/tell of CMA-ES over z (λ queries; fitness L_I on one fixed augmented view of
   the shots, R held fixed; bounds ±5 where the config sets them);
2. the population-mean prompt: the mean of a freshly asked population (lines 157-160);
3. one epoch of R (loss L_O, its KL term on while the CMA-ES evaluations spent are at
   most budget // n) on a fresh augmented view of the shots scored under that prompt:
   one more query, which the official code does not count and we do.
So a run makes budget // (λ + 1) generations. A checkpoint after every generation (in
`args.output_dir`, or a temporary run folder named in the log) makes a run resumable
exactly (augmentations are a function of (seed, generation)): the resumed run keeps the
plan the run started with (each history record carries it), whatever the black box's
own counter says by then, and re-uploads its images if the black box no longer knows
their handle (a restarted server, an evicted cache).

R is trained here with a plain Adam loop, not with the package's
`AdaptationTrainer`: its "epoch" is a handful of steps on the N×K logits that the
black box returned in *this* generation, interleaved with CMA-ES 200 times a run. A
Trainer per generation would rebuild its optimizer, scheduler and dataloader each
time (losing Adam's moments, which the official loop carries across generations), and
its checkpoints would not hold the CMA-ES state the resume needs.
"""

from __future__ import annotations

import copy
import logging
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import progress_bar
from .arguments import CraFTTrainingArguments
from .checkpoint import load_loop_state, save_loop_state
from .protocol import UnknownImagesError
from .refine import prompt_fitness, refinement_loss

logger = logging.getLogger(__name__)


class _Randn:
    """CMA-ES's normal sampler on a private NumPy generator: the search never touches or
    depends on NumPy's global random state, so a resume can replay it (`checkpoint`)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


def new_strategy(dim: int, args: CraFTTrainingArguments):
    import cma

    options = {
        "popsize": args.population,
        "seed": np.nan,
        "randn": _Randn(args.seed),
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
        "maxiter": np.inf,
        "tolfun": 0,
        "tolx": 0,
        "tolstagnation": np.inf,
        "tolflatfitness": np.inf,
    }  # no early stop: the budget decides; no log files
    if args.bound > 0:  # mrflogs/CraFT main_craft.py lines 178-179 (bound 5; 0 = unbounded)
        options["bounds"] = [-args.bound, args.bound]
    return cma.CMAEvolutionStrategy(np.zeros(dim), args.sigma, options)


def augmented_views(pixel_values: torch.Tensor, seed_key) -> torch.Tensor:
    """One random-resized-crop (area 0.5-1, ratio 3/4-4/3, bicubic) + horizontal-flip (p 0.5)
    view of every prepared image, drawn from np.random.default_rng(seed_key): the official
    train_transform (mrflogs/CraFT main_craft.py lines 21-26), applied to the prepared
    (resized, centre-cropped, normalised) images, as the user side holds no raw ones."""
    from ..data.augment import random_resized_crop_box

    rng = np.random.default_rng(seed_key)
    x = torch.as_tensor(pixel_values, dtype=torch.float32)
    height, width = x.shape[-2:]
    out = torch.empty_like(x)
    for i in range(len(x)):
        left, top, right, bottom = random_resized_crop_box(width, height, (0.5, 1.0), generator=rng)
        crop = x[i : i + 1, :, top:bottom, left:right]
        view = F.interpolate(crop, size=(height, width), mode="bicubic", align_corners=False)[0]
        out[i] = view.flip(-1) if rng.random() < 0.5 else view
    return out


class CollaborativeLoop:
    """Train a `CraFTForImageClassification`'s prompt (z) and refinement module R against a black box.

    Args:
        model: a `CraFTForImageClassification` (its `prompt` attached to `black_box`, its `refiner`).
        black_box: a `BlackBoxVLM`.
        pixel_values / labels: the labelled shots [N, 3, H, W], [N].
        args: `CraFTTrainingArguments`.
    """

    def __init__(self, model, black_box, pixel_values, labels, args: CraFTTrainingArguments | None = None):
        self.model, self.black_box = model, black_box
        self.args = args or CraFTTrainingArguments()
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.class_names = model.class_names()
        self.pixel_values = torch.as_tensor(pixel_values, dtype=torch.float32)
        augment_fitness = self.args.fitness_images == "augmented"
        fitness_x = augmented_views(self.pixel_values, [self.args.seed, 1]) if augment_fitness else self.pixel_values
        self._fitness_pixels = fitness_x  # kept to upload again if the black box forgets them
        self.images = black_box.upload_images(fitness_x)  # the fitness images, fixed for the run
        self.output_dir = self.args.output_dir  # None: a temporary run folder, made by the first run()
        available = black_box.remaining if self.args.budget is None else self.args.budget
        self.generations = _plan(available, self.args)  # run() refuses a budget above what the box has left
        # CMA-ES evaluations the run makes: the official `budget` its KL switch-off divides by n
        self.evaluation_budget = self.generations * self.args.population
        self.generation, self.history = 0, []
        self.strategy = new_strategy(model.prompt.dim, self.args) if self.args.optimize_prompt else None
        self.cmaes_fitness: list[list[float]] = []  # what was told each generation: rebuilds the strategy
        generator = torch.Generator().manual_seed(self.args.seed)
        model.refiner.reset_parameters(generator, zero_last=self.args.refiner_init == "zero")
        params, lr, decay = model.refiner.parameters(), self.args.learning_rate, self.args.weight_decay
        # official: plain Adam (main_craft.py line 191); weight_decay > 0: AdamW, the library's former choice
        self.optimizer = (
            torch.optim.AdamW(params, lr=lr, weight_decay=decay) if decay else torch.optim.Adam(params, lr=lr)
        )
        self._fixed_outputs = None  # refinement-only: the initial prompt's scores, queried once

    # ------------------------------------------------------------------ one generation
    def _query(self, z: np.ndarray) -> torch.Tensor:
        contexts = self.model.prompt.contexts(z)
        try:
            scores = self.black_box.query(contexts, self.images, self.class_names)
        except UnknownImagesError:  # a restarted server or an evicted cache: not charged, upload again
            self.images = self.black_box.upload_images(self._fitness_pixels)
            scores = self.black_box.query(contexts, self.images, self.class_names)
        return torch.from_numpy(scores)

    def _prompt_step(self) -> tuple[torch.Tensor, np.ndarray]:
        """Ask λ candidates, score them (λ queries), tell CMA-ES their fitness L_I; set z to the
        population-mean prompt. Returns the best candidate's scores and the candidates."""
        if self.strategy is None:
            if self._fixed_outputs is None:
                self._fixed_outputs = self._query(np.zeros((1, self.model.prompt.dim), np.float32))
            return self._fixed_outputs[0], np.zeros((0, self.model.prompt.dim))
        candidates = np.asarray(self.strategy.ask())
        y_i = self._query(candidates)
        with torch.no_grad():
            y_o = self.model.refiner(y_i) if self.args.train_refinement else y_i
            fitness = prompt_fitness(y_i, y_o, self.labels, self.args.fitness_kl_weight)
        self.strategy.tell(list(candidates), fitness.double().tolist())
        self.cmaes_fitness.append(fitness.double().tolist())  # what the checkpoint replays on resume
        if self.args.prompt_mean == "population":  # official: mean of a fresh population (main_craft.py 157-160)
            # drawn from a copy: a second ask() on the strategy itself breaks pycma's TPA step-size
            # adaptation (used at d0 >= 300), which expects its mean-shift pair in the next tell
            mean = np.mean(np.asarray(copy.deepcopy(self.strategy).ask()), axis=0)
        elif self.args.prompt_mean == "best":  # main_craft_imagenet.py line 165: es.result.xbest
            mean = self.strategy.result.xbest
        else:
            mean = self.strategy.mean
        self.model.prompt.z.copy_(torch.as_tensor(mean, dtype=torch.float32))
        return y_i[int(fitness.argmin())], candidates

    def _refinement_inputs(self, best: torch.Tensor) -> torch.Tensor:
        """What R trains on this generation: the best candidate's scores, or (official) a fresh
        augmented view of the shots scored under the population-mean prompt (one query)."""
        if self.args.refine_inputs == "best_candidate":
            return best
        views = augmented_views(self.pixel_values, [self.args.seed, 2, self.generation])
        handle = self.black_box.upload_images(views)
        return torch.from_numpy(self.black_box.query(self.model.prompt.context(), handle, self.class_names))

    def _refine_epoch(self, y_i: torch.Tensor) -> float:
        """One epoch of Adam on L_O over the shots, shuffled by (seed, generation)."""
        refiner = self.model.refiner.train()
        shuffle = torch.Generator().manual_seed(self.args.seed * 100_003 + self.generation)
        order = torch.randperm(len(y_i), generator=shuffle)
        evaluations = (self.generation + 1) * self.args.population  # official `steps`, counted before R's epoch
        on = self.args.refinement_kl_on(evaluations, self.evaluation_budget)
        weight = self.args.refinement_kl_weight if on else 0.0
        total = 0.0
        for start in range(0, len(order), self.args.batch_size):
            idx = order[start : start + self.args.batch_size]
            loss = refinement_loss(refiner(y_i[idx]), y_i[idx], self.labels[idx], weight)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(idx)
        refiner.eval()
        return total / len(order)

    def step(self) -> dict:
        """One generation; returns its record (queries spent, train accuracy, losses)."""
        y_i, candidates = self._prompt_step()
        loss_o = self._refine_epoch(self._refinement_inputs(y_i)) if self.args.train_refinement else float("nan")
        with torch.no_grad():
            y_o = self.model.refiner(y_i) if self.args.train_refinement else y_i
        self.generation += 1
        record = {
            "generation": self.generation,
            "queries": self.black_box.queries,
            "loss_o": loss_o,
            "train_accuracy": float((y_o.argmax(-1) == self.labels).float().mean() * 100),
            "planned_generations": self.generations,
        }
        self.history.append(record)
        self.last_candidates = candidates
        return record

    # ------------------------------------------------------------------ run
    def run(self, resume_from_checkpoint=None, max_generations: int | None = None):
        """Run the remaining generations (at most `max_generations` now); returns the model.

        A checkpoint is written after every generation to `args.output_dir`, or (not
        set) to a temporary run folder made once per loop and named in a warning. If the
        black box becomes unreachable mid-run, the state before the failed generation is
        saved there and the error says where: `run(resume_from_checkpoint=...)` then
        continues exactly, on this loop or a new one, after a server restart too."""
        if resume_from_checkpoint:
            load_loop_state(self, resume_from_checkpoint)
            self.generations = self._resumed_plan()
        elif self.generation == 0:  # a fresh run (a resumed one needs only what is left of its plan)
            _check_budget_fits(self.args.budget, self.black_box)
        folder = self._run_folder()
        todo = self.generations - self.generation
        todo = todo if max_generations is None else min(todo, max_generations)
        bar = progress_bar(total=todo, desc="CraFT generations")
        try:
            for _ in range(todo):
                record = self._guarded_step()
                save_loop_state(self, folder)
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
            where = save_loop_state(self, self._run_folder())
            raise BlackBoxConnectionError(
                f"{e}. The run stopped before generation {self.generation + 1} of {self.generations} "
                f"({self.black_box.queries} queries spent); its state is saved in {where}: resume with "
                f"run(resume_from_checkpoint={str(where)!r})"
            ) from e

    def _run_folder(self) -> str:
        if self.output_dir is None:
            self.output_dir = tempfile.mkdtemp(prefix="craft-run-")
            logger.warning(
                "CraFTTrainingArguments.output_dir is not set: this run's checkpoints go to %s (resume "
                "with run(resume_from_checkpoint=...)); set output_dir to keep them elsewhere",
                self.output_dir,
            )
        return self.output_dir

    def _resumed_plan(self) -> int:
        """The generations of the run being resumed: the plan it recorded, not one recomputed
        from a black box whose own counter has moved on since."""
        for record in reversed(self.history):
            planned = record.get("planned_generations") if isinstance(record, dict) else None
            if isinstance(planned, int) and planned >= self.generation:
                return planned
        if self.args.budget is not None:  # a checkpoint without the record: the run's own budget
            return max(self.generation, _plan(self.args.budget, self.args))
        try:  # neither: what the black box has left, after the generations already done
            return self.generation + _plan(self.black_box.remaining, self.args)
        except ValueError:  # less than one more generation left
            return self.generation


def _check_budget_fits(budget: int | None, black_box) -> None:
    """Refuse a run that asks for more queries than the black box has left: it used to plan
    silently with what was left, a shorter run than asked for (and a different KL switch-off)."""
    left = black_box.remaining
    if budget is not None and left is not None and budget > left:
        raise ValueError(
            f"the run asks for budget={budget} queries, but the black box allows only {left} more (its own budget "
            f"{getattr(black_box, 'budget', '?')}, {black_box.queries} used): pass budget={left} or lower, or "
            "budget=None to spend what the black box has left."
        )


def _plan(available: int | None, args: CraFTTrainingArguments) -> int:
    """Whole generations the budget allows; refuses a budget below one generation."""
    if available is None:
        raise ValueError("no budget: set CraFTTrainingArguments.budget or give the black box a budget")
    refine_query = int(args.train_refinement and args.refine_inputs == "augmented")
    per_generation = args.population + refine_query if args.optimize_prompt else refine_query
    if args.optimize_prompt and available < per_generation:
        raise ValueError(
            f"a budget of {available} queries is less than one CMA-ES generation ({per_generation} "
            "queries, the population): raise the budget or lower the population"
        )
    if not args.optimize_prompt:  # refinement-only: as many epochs as the full method gets generations
        if available < 1:
            raise ValueError("refinement-only needs one query for the initial prompt; the budget is 0")
        return max(1, available // (args.population + refine_query))
    return available // per_generation
