"""`ExtraSamplesTrainer`: the training path with samples drawn afresh for every batch.

SHIP's official code (mrflogs/SHIP `main_coop_vae.py` L138-152) appends to every batch of B
real image features B synthesized ones, drawn anew for that batch (random new classes, fresh
z ~ N(0, I)). Draws that change with every batch are not a dataset, so they join the batch
here, at the training step, instead of in the data: the dataset, its sampler, the schedule
and the checkpoints stay those of the real features.

`draw_extra(n, rng, device) -> (features [n, D], labels [n])` draws them; `rng` is a
`torch.Generator` seeded from (the run's seed, the process, the optimizer step, the
micro-batch within that step) rather than a random state carried from batch to batch, so a
run is deterministic and a run resumed from a checkpoint draws what the uninterrupted run
drew from that step on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .trainer import AdaptationTrainer

__all__ = ["ExtraSamplesTrainer"]


class ExtraSamplesTrainer(AdaptationTrainer):
    """`AdaptationTrainer` whose every training batch of features gets as many extra samples,
    drawn for it by `draw_extra` (see the module docstring). Real samples come first."""

    def __init__(self, *args, draw_extra, **kwargs):
        super().__init__(*args, **kwargs)
        self.draw_extra = draw_extra
        self._last_draw = (None, 0)  # (optimizer step, micro-batches drawn at it)

    def batch_generator(self) -> torch.Generator:
        """The generator of this micro-batch's draw: a function of where the run is, not of
        the draws before it (a resumed run starts at a step boundary, micro-batch 0)."""
        step, drawn = self._last_draw
        micro = drawn if step == self.state.global_step else 0
        self._last_draw = (self.state.global_step, micro + 1)
        key = [self.args.seed, self.args.process_index, self.state.global_step, micro]
        return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1))

    def with_extra_samples(self, inputs):
        """`inputs` ({"image_features": [B, D], "labels": [B]}) with B drawn samples appended."""
        if not isinstance(inputs, Mapping) or not {"image_features", "labels"} <= set(inputs):
            raise ValueError(
                "ExtraSamplesTrainer appends drawn features to batches with 'image_features' and 'labels'; "
                f"got {list(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__}"
            )
        x, y = inputs["image_features"], inputs["labels"]
        extra_x, extra_y = self.draw_extra(y.shape[0], self.batch_generator(), x.device)
        if extra_x.shape != x.shape or extra_y.shape != y.shape:
            raise ValueError(
                f"draw_extra({y.shape[0]}, ...) must return features {tuple(x.shape)} and labels {tuple(y.shape)}; "
                f"got {tuple(extra_x.shape)}, {tuple(extra_y.shape)}"
            )
        return {**inputs, "image_features": torch.cat([x, extra_x.to(x)]), "labels": torch.cat([y, extra_y.to(y)])}

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Only training batches get extra samples (an evaluation pass, if any, sees the real ones).
        return super().training_step(model, self.with_extra_samples(inputs), num_items_in_batch)
