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
"""

from __future__ import annotations

import warnings

import torch

from ..configuration_utils import DEFAULT_SEED
from ..data import class_names as dataset_class_names


def label_only_classes(model, train, label_column: str = "label") -> list[str]:
    """The model's classes that `train` has no label for, in the model's order."""
    train_split = train["train"] if hasattr(train, "keys") and "train" in train else train
    labelled = set(dataset_class_names(train_split, label_column))
    return [name for name in model.class_names() if name not in labelled]


def synthesize_for(model, generator, class_names: list[str], n_per_class: int, seed: int):
    """(features [C·n, D], labels [C·n] indexing `model`'s classes) synthesized by `generator`."""
    if not getattr(generator.config, "is_fitted", False):
        warnings.warn("the SHIP generator has not been fitted: its features are those of a random VAE", stacklevel=3)
    seen_by_generator = set(generator.class_names()) & set(class_names)
    if seen_by_generator:
        raise ValueError(
            f"the generator was trained on images of {sorted(seen_by_generator)[:5]}, which the training "
            "data leave unlabelled: base and new classes overlap. Train the generator on the labelled "
            "classes only."
        )
    features, rows = generator.generate(class_names, n_per_class=n_per_class, seed=seed)
    label2id = {name: i for i, name in enumerate(model.class_names())}
    labels = torch.tensor([label2id[class_names[r]] for r in rows.tolist()], dtype=torch.long)
    return features, labels


def fit_with_synthesized(
    model,
    train,
    generator,
    *,
    n_per_class: int | None = None,
    seed: int = DEFAULT_SEED,
    label_column: str = "label",
    **fit_kwargs,
):
    """Train `model` on `train` (its labelled classes) plus `generator`'s features of the
    model's label-only classes; returns the fitted model.

    `model`: any `FeatureTrainedCLIPModel` (CoOp, CLIP-Adapter, Tip-Adapter(-F)) built
    over all class names; `train`: what `model.fit` takes, labelled with a subset of
    them; `n_per_class`: synthesized features per label-only class (default: as many as
    each labelled class contributes, shots × views); `fit_kwargs` go to `model.fit`.
    """
    new = label_only_classes(model, train, label_column)
    if not new:
        raise ValueError(
            "every class of the model is labelled in the training data: there is nothing to synthesize; "
            "build the model over the base and the new class names"
        )
    if n_per_class is None:
        n_per_class = (fit_kwargs.get("shots") or model.config.shots or 16) * (
            fit_kwargs.get("views") or model.config.views
        )
    extra = synthesize_for(model, generator, new, n_per_class, seed)
    model.fit(train, extra_features=extra, seed=seed, label_column=label_column, **fit_kwargs)
    model.config.synthesized_classes, model.config.synthesized_per_class = new, n_per_class
    return model
