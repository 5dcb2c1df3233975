"""SHIP's use of its generator (Wang et al., ICCV 2023): synthesize image features for
the classes that have only a name, and train an off-the-shelf few-shot method (CoOp,
CLIP-Adapter, Tip-Adapter(-F)) on the real features of the labelled classes plus the
synthesized ones. The result is one model over base + new classes.

    generator = SHIPGenerator.from_clip(clip, base_names).fit(base_train)
    model = CoOpForImageClassification.from_clip(clip, base_names + new_names)
    fit_with_synthesized(model, base_train, generator, seed=0)
    model.evaluate(test_new)        # scored within the new classes' label space

No test or new-class image is read: the generator is trained for a fixed schedule
(the paper's code picked its epoch by test H; we do not).

By default CoOp and CLIP-Adapter train on features synthesized afresh for every batch, as the
official code draws them (`synthesis="per_batch"`: `PerBatchSynthesis`, through
`hf_clipadapt.training.extra_samples`); Tip-Adapter, whose cache keys must be one fixed set,
and `synthesis="fixed"` train on one set drawn once.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..configuration_utils import DEFAULT_SEED
from ..data import class_names as dataset_class_names


def label_only_classes(model, train, label_column: str = "label") -> list[str]:
    """The model's classes that `train` has no label for, in the model's order."""
    train_split = train["train"] if hasattr(train, "keys") and "train" in train else train
    labelled = set(dataset_class_names(train_split, label_column))
    return [name for name in model.class_names() if name not in labelled]


def check_generator(generator, class_names: list[str]) -> None:
    """Warn if `generator` is unfitted; refuse it if it was trained on any of `class_names`."""
    if not getattr(generator.config, "is_fitted", False):
        warnings.warn("the SHIP generator has not been fitted: its features are those of a random VAE", stacklevel=4)
    seen_by_generator = set(generator.class_names()) & set(class_names)
    if seen_by_generator:
        raise ValueError(
            f"the generator was trained on images of {sorted(seen_by_generator)[:5]}, which the training "
            "data leave unlabelled: base and new classes overlap. Train the generator on the labelled "
            "classes only."
        )


def model_class_ids(model, class_names: list[str]) -> torch.Tensor:
    """The indices of `class_names` among `model`'s classes."""
    label2id = {name: i for i, name in enumerate(model.class_names())}
    return torch.tensor([label2id[name] for name in class_names], dtype=torch.long)


def synthesize_for(model, generator, class_names: list[str], n_per_class: int, seed: int):
    """(features [C·n, D], labels [C·n] indexing `model`'s classes) synthesized by `generator`."""
    check_generator(generator, class_names)
    features, rows = generator.generate(class_names, n_per_class=n_per_class, seed=seed)
    return features, model_class_ids(model, class_names)[rows]


class PerBatchSynthesis:
    """SHIP's official synthesis, as a sampler for `model.fit(extra_features=...)`: each
    training batch of n real features gets n synthesized ones, drawn for it alone
    (mrflogs/SHIP `main_coop_vae.py` L138-151): classes uniform over `class_names`
    (L140), z ~ N(0, I) (L141), decoded through each sample's class name and
    L2-normalised (L143-149). Labels index `model`'s classes.

    `__call__(n, rng, device)` draws the classes, then z, from `rng` (on the CPU, so a seed
    gives the same draws on any device) and decodes on `device`, moving the generator there
    (its text tower may be the model's, which the trainer has moved already).
    """

    def __init__(self, model, generator, class_names: list[str]):
        check_generator(generator, class_names)
        self.generator, self.class_names = generator, list(class_names)
        self.class_ids = model_class_ids(model, self.class_names)  # the classes drawn, for coverage checks
        self.tokens = generator.class_tokens(self.class_names)

    @torch.no_grad()
    def __call__(self, n: int, rng: torch.Generator, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(self.class_names), (n,), generator=rng)
        z = torch.randn(n, self.generator.config.latent_dim, generator=rng)
        g = self.generator
        if device is not None and g.ctx.device != torch.device(device):
            g.to(device)
        was_training = g.training
        g.eval()  # as `generate`; the trainer sets the model's mode again before its forward
        features = g.decode(z.to(g.ctx.device), self.tokens, rows)
        g.train(was_training)
        return F.normalize(features, dim=-1), self.class_ids[rows].to(features.device)


SYNTHESIS = ("fixed", "per_batch")


def fit_with_synthesized(
    model,
    train,
    generator,
    *,
    n_per_class: int | None = None,
    synthesis: str | None = None,
    seed: int = DEFAULT_SEED,
    label_column: str = "label",
    **fit_kwargs,
):
    """Train `model` on `train` (its labelled classes) plus `generator`'s features of the
    model's label-only classes; returns the fitted model.

    `model`: any `FeatureTrainedCLIPModel` (CoOp, CLIP-Adapter, Tip-Adapter(-F)) built
    over all class names; `train`: what `model.fit` takes, labelled with a subset of
    them; `fit_kwargs` go to `model.fit`. `synthesis`:

    * "per_batch": the official code's synthesis (`PerBatchSynthesis`): every training batch
      of B real features gets B fresh synthesized ones of random label-only classes. CoOp and
      CLIP-Adapter only: Tip-Adapter's cache keys must be one fixed set;
    * "fixed": one set of `n_per_class` features per label-only class (default: as many as
      each labelled class contributes, shots × views), drawn once and trained on with the
      real ones as one dataset;
    * None (default): "per_batch" where the model takes it (the authors' draw), "fixed" for
      Tip-Adapter or when `n_per_class` is given.
    """
    if synthesis is None:
        per_batch = getattr(model, "extra_features_per_batch", False) and n_per_class is None
        synthesis = "per_batch" if per_batch else "fixed"
    if synthesis not in SYNTHESIS:
        raise ValueError(f"synthesis must be one of {SYNTHESIS}, got {synthesis!r}")
    new = label_only_classes(model, train, label_column)
    if not new:
        raise ValueError(
            "every class of the model is labelled in the training data: there is nothing to synthesize; "
            "build the model over the base and the new class names"
        )
    if synthesis == "per_batch":
        check_per_batch(model, n_per_class)
        extra = PerBatchSynthesis(model, generator, new)
    else:
        if n_per_class is None:
            n_per_class = (fit_kwargs.get("shots") or model.config.shots or 16) * (
                fit_kwargs.get("views") or model.config.views
            )
        extra = synthesize_for(model, generator, new, n_per_class, seed)
    model.fit(train, extra_features=extra, seed=seed, label_column=label_column, **fit_kwargs)
    # synthesized_per_class None: drawn per batch (the model cards say so)
    model.config.synthesized_classes, model.config.synthesized_per_class = new, n_per_class
    return model


def check_per_batch(model, n_per_class) -> None:
    """Refuse what per-batch synthesis cannot do, before any image is encoded."""
    if not getattr(model, "extra_features_per_batch", False):
        raise ValueError(
            f"{type(model).__name__} cannot train on features synthesized afresh per batch: it keeps its "
            "training features (Tip-Adapter's cache keys), which need one fixed set. Use synthesis='fixed'."
        )
    if n_per_class is not None:
        raise ValueError(
            "n_per_class sizes the fixed synthesized set; synthesis='per_batch' draws as many features as "
            "each batch has real ones. Leave n_per_class out, or use synthesis='fixed'."
        )
