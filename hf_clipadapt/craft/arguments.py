"""Training settings of CraFT's collaborative loop (the official defaults; not model config).

Defaults and per-dataset presets are read from the authors' release, mrflogs/CraFT:
`craft_configs/<dataset>.yaml` (sigma, std, bound, n, weight, batch_size, lr, popsize,
budget) and `main_craft.py` (Adam on R at line 191; the KL switch-off at line 220).
The default (no preset) is the configuration five of the eleven datasets share
(caltech101, oxford_flowers, stanford_cars, sun397, ucf101; preset "official"), except the
search scale: σ = 0.1 with std(A) = 0.02 (σ·std 0.002, the library's former scale) instead
of σ = 1 with std 0.2 (0.2). On the testbed CLIP (16 shots, 1,000 queries, 3 seeds,
benchmarks/craft/RESULTS.md) the official scale scored 3.7 points lower for CraFT and put
prompt-only tuning below zero-shot. `preset="official"` (or any dataset preset) restores it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..configuration_utils import DEFAULT_SEED, lookup_preset

# Per-dataset values of mrflogs/CraFT craft_configs/<name>.yaml (the keys there: sigma,
# weight, bound, n, batch_size; std is the projection's, see CraFTConfig). bound 0 = unbounded.
# imagenet runs main_craft_imagenet.py in the official release: R hidden 512 (lines 191-195), the
# prompt from CMA-ES's best solution so far (line 165), and A left at nn.Linear's default init
# U(±1/√512) (line 88: the config's std is not used), std 1/√(3·512) ≈ 0.0255, matched here by a Gaussian.
PRESETS: dict[str, dict] = {
    "official": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "caltech101": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "dtd": dict(sigma=0.02, kl_weight=0.001, bound=5.0, kl_off_divisor=1, batch_size=256, projection_std=1.0),
    "eurosat": dict(sigma=0.02, kl_weight=0.01, bound=5.0, kl_off_divisor=1, batch_size=256, projection_std=1.0),
    "fgvc": dict(sigma=0.02, kl_weight=0.1, bound=0.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "food101": dict(sigma=1.0, kl_weight=1.0, bound=0.0, kl_off_divisor=1, batch_size=256, projection_std=0.2),
    "imagenet": dict(
        sigma=1.0,
        kl_weight=0.0,
        bound=0.0,
        kl_off_divisor=1,
        batch_size=256,
        prompt_mean="best",
        projection_std=(3 * 512) ** -0.5,
        refine_hidden=512,
    ),
    "oxford_flowers": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "oxford_pets": dict(sigma=0.02, kl_weight=0.1, bound=5.0, kl_off_divisor=1, batch_size=64, projection_std=0.2),
    "stanford_cars": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "sun397": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
    "ucf101": dict(sigma=1.0, kl_weight=0.1, bound=5.0, kl_off_divisor=4, batch_size=256, projection_std=0.2),
}
MODEL_KEYS = ("projection_std", "refine_hidden")  # preset values that belong to CraFTConfig, not the loop


def preset_values(name: str) -> dict:
    """The official values of a dataset preset (both loop and model keys); clear error if unknown."""
    return lookup_preset(PRESETS, name, "CraFT", source="mrflogs/CraFT craft_configs")[1]


@dataclass
class CraFTTrainingArguments:
    """Settings of `CollaborativeLoop`; defaults are the official ones (mrflogs/CraFT).

    Args:
        budget: queries the loop may spend (8,000 officially); None: the black box's
            remaining budget. Every query counts, the refinement step's included (see
            `refine_inputs`). A budget above what the black box has left is refused when
            the run starts (it is never cut short silently).
        population: CMA-ES population λ (popsize 40).
        sigma: CMA-ES initial step size on z: 0.1 (measured better on the testbed, see the
            module docstring); officially 1, or 0.02 on dtd, eurosat, fgvc, oxford_pets (presets).
        bound: CMA-ES box bounds ±bound on z (5; 0 = unbounded, as on fgvc, food101, imagenet).
        kl_weight: w, the weight of both KL terms (0.1; per dataset in the presets).
            Prompt fitness = CE(Y_I) + w·KL(P_O ‖ P_I); R's loss = CE(Y_O) + w·KL(P_I ‖ P_O).
        kl_off_divisor: n; R's KL term is switched off once more than budget // n CMA-ES
            evaluations are spent (main_craft.py line 220). 1 = never off; None = never off.
        lambda_i / lambda_o: override w for the fitness / R's loss separately (None: kl_weight).
        learning_rate / weight_decay / batch_size: the optimiser of R: Adam, lr 1e-3, batch
            256 (64 on oxford_pets). weight_decay > 0 switches to AdamW with decoupled decay
            (the library's former setting, 1e-2); 0 is the official plain Adam.
        refine_inputs: what R trains on each generation. "augmented" (official): a fresh
            random-resized-crop + flip view of every shot, scored under the population-mean
            prompt, one more query per generation. "best_candidate" (the library's former
            choice): the generation's best candidate's scores on the clean shots, no extra query.
        fitness_images: "augmented" (official: one fixed augmented view of every shot, drawn
            once per run) or "clean" (the prepared shots as given).
        prompt_mean: the prompt R is trained under and the saved z. "population" (official:
            the mean of a freshly asked CMA-ES population), "distribution" (CMA-ES's mean) or
            "best" (the best solution evaluated so far: main_craft_imagenet.py, the imagenet preset).
        refiner_init: "official" (PyTorch's default init of both layers) or "zero" (last
            layer zero, so R starts as the identity map: the library's former choice).
        seed: seeds CMA-ES's sampling, R's initialisation, shuffling and augmentation.
        optimize_prompt / train_refinement: switch a module off for the ablations
            (refinement-only keeps the initial prompt; prompt-only never trains R).
        output_dir: where a checkpoint is written after every generation (None: a new
            temporary folder, named in a warning when the run starts).
        preset: the dataset preset these values came from (see `from_preset`), recorded.
    """

    budget: int | None = 8000
    population: int = 40
    sigma: float = 0.1
    bound: float = 5.0
    kl_weight: float = 0.1
    kl_off_divisor: int | None = 4
    lambda_i: float | None = None
    lambda_o: float | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    refine_inputs: str = "augmented"
    fitness_images: str = "augmented"
    prompt_mean: str = "population"
    refiner_init: str = "official"
    seed: int = DEFAULT_SEED
    optimize_prompt: bool = True
    train_refinement: bool = True
    output_dir: str | None = None
    preset: str | None = None

    def __post_init__(self):
        if self.population < 2:
            raise ValueError(f"population must be >= 2 (CMA-ES ranks candidates), got {self.population}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be a positive number of queries, got {self.budget}")
        if self.sigma <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError(
                "sigma and learning_rate must be > 0 and batch_size >= 1, got "
                f"{self.sigma}, {self.learning_rate}, {self.batch_size}"
            )
        if self.bound < 0 or self.kl_weight < 0 or self.weight_decay < 0:
            raise ValueError(
                f"bound, kl_weight and weight_decay must be >= 0, got {self.bound}, {self.kl_weight}, "
                f"{self.weight_decay}"
            )
        if self.kl_off_divisor is not None and self.kl_off_divisor < 1:
            raise ValueError(
                f"kl_off_divisor must be a positive int (n) or None (never off), got {self.kl_off_divisor}"
            )
        for name, allowed in (
            ("refine_inputs", ("augmented", "best_candidate")),
            ("fitness_images", ("augmented", "clean")),
            ("prompt_mean", ("population", "distribution", "best")),
            ("refiner_init", ("official", "zero")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (self.optimize_prompt or self.train_refinement):
            raise ValueError("optimize_prompt and train_refinement are both off: there is nothing to train")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> CraFTTrainingArguments:
        """The official settings of a dataset ("eurosat", "dtd", ..., see `PRESETS`; "official" is
        the configuration most official datasets share, the authors' search scale included), any field
        overridden. The preset's model values (projection_std, refine_hidden) go to
        `CraFTForImageClassification.from_black_box(..., preset=name)`, not here."""
        values = {k: v for k, v in preset_values(name).items() if k not in MODEL_KEYS}
        return cls(**{**values, "preset": str(name).lower(), **overrides})

    @property
    def fitness_kl_weight(self) -> float:
        return self.kl_weight if self.lambda_i is None else self.lambda_i

    @property
    def refinement_kl_weight(self) -> float:
        return self.kl_weight if self.lambda_o is None else self.lambda_o

    def refinement_kl_on(self, evaluations: int, budget: int) -> bool:
        """Whether R's KL term is on after `evaluations` CMA-ES evaluations of a `budget`-query run:
        evaluations <= budget // n (mrflogs/CraFT main_craft.py line 220, `steps` counted before R's epoch)."""
        return self.kl_off_divisor is None or evaluations <= budget // self.kl_off_divisor

    def to_dict(self) -> dict:
        return asdict(self)
