"""Training settings of CraFT's collaborative loop (the paper's defaults; not model config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class CraFTTrainingArguments:
    """Settings of `CollaborativeLoop` (defaults: Wang et al., ICML 2024, where stated).

    Args:
        budget: queries the loop may spend (8,000 in the paper); None: the black box's
            remaining budget. It runs budget // population whole generations.
        population: CMA-ES population λ (40).
        sigma: CMA-ES initial step size on z.
        lambda_i / lambda_o: weights of the KL terms of L_I and L_O.
        learning_rate / weight_decay / batch_size: AdamW on R (1e-3, 256).
        seed: seeds CMA-ES's sampling and R's initialisation and shuffling.
        optimize_prompt / train_refinement: switch a module off for the ablations
            (refinement-only queries the initial prompt once; prompt-only never trains R).
        output_dir: where a checkpoint is written after every generation (None: a new
            temporary folder, named in a warning when the run starts).
    """

    budget: int | None = 8000
    population: int = 40
    sigma: float = 0.1
    lambda_i: float = 1.0
    lambda_o: float = 1.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 256
    seed: int = 0
    optimize_prompt: bool = True
    train_refinement: bool = True
    output_dir: str | None = None

    def __post_init__(self):
        if self.population < 2:
            raise ValueError(f"population must be >= 2 (CMA-ES ranks candidates), got {self.population}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be a positive number of queries, got {self.budget}")
        if self.sigma <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("sigma and learning_rate must be > 0 and batch_size >= 1, got "
                             f"{self.sigma}, {self.learning_rate}, {self.batch_size}")  # fmt: skip
        if not (self.optimize_prompt or self.train_refinement):
            raise ValueError("optimize_prompt and train_refinement are both off: there is nothing to train")

    def to_dict(self) -> dict:
        return asdict(self)
