"""The compositional zero-shot suite ("zsl"): classes are (colour, object) pairs.

Classes are every (colour, object) pair of the known objects, object-major
(class id = object index · 10 + colour index). Seen classes are the pairs that
pretraining used (`seen_combinations`, 128 with all 16 objects); unseen classes are
the pairs it never rendered nor captioned (`held_out_combinations`, 32), although
each of their words appears in seen pairs. That is the zero-shot setting of the
attribute benchmarks (Lampert et al., 2009; Xian et al., 2018): classes described
by semantic factors, a model trained on some, tested on classes it never saw.

Class semantics, in the suite's ``classes`` split (one row per class):

* ``attributes``: binary attributes, one-hot colour ⊕ one-hot object
  (10 + 16 = 26 dimensions), the classic ZSL form;
* ``name`` ("red sneaker"): embed it with the text tower for the second variant,
  ``load_testbed_clip().zero_shot_classifier(names, TESTBED_TEMPLATES)``.

Image splits carry a global ``label`` (a `ClassLabel` over all classes) and the
scene attributes, like the other suites; ``train`` holds seen classes only,
``test_seen`` other images of the seen classes, ``test_unseen`` the unseen ones
(in the transductive protocol, used without their labels during training).
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from .world import COLOUR_NAMES, held_out_combinations, seen_combinations


def zsl_classes(objects) -> list[tuple[str, str]]:
    """Every (colour, object) pair of `objects`, object-major, colours in `COLOUR_NAMES` order."""
    return [(c, o) for o in objects for c in COLOUR_NAMES]


def zsl_attributes(objects) -> np.ndarray:
    """The binary class-attribute matrix [C, 10 + len(objects)]: one-hot colour ⊕ one-hot object."""
    classes = zsl_classes(objects)
    out = np.zeros((len(classes), len(COLOUR_NAMES) + len(objects)), dtype=np.float32)
    for i, (colour, obj) in enumerate(classes):
        out[i, COLOUR_NAMES.index(colour)] = 1.0
        out[i, len(COLOUR_NAMES) + list(objects).index(obj)] = 1.0
    return out


def zsl_split_ids(objects) -> tuple[list[int], list[int]]:
    """(seen class ids, unseen class ids) over `zsl_classes(objects)`; disjoint, covering every class."""
    classes = zsl_classes(objects)
    seen, unseen = set(seen_combinations(objects)), set(held_out_combinations(objects))
    return [i for i, c in enumerate(classes) if c in seen], [i for i, c in enumerate(classes) if c in unseen]


def zsl_class_table(objects, names: list[str]) -> Dataset:
    """One row per class: label, name, colour, object, seen, attributes."""
    classes = zsl_classes(objects)
    seen_ids = set(zsl_split_ids(objects)[0])
    att = zsl_attributes(objects)
    features = Features(
        {
            "label": ClassLabel(names=names),
            "name": Value("string"),
            "colour": Value("string"),
            "object": Value("string"),
            "seen": Value("bool"),
            "attributes": Sequence(Value("float32")),
        }
    )
    return Dataset.from_dict(
        {
            "label": list(range(len(classes))),
            "name": names,
            "colour": [c for c, _ in classes],
            "object": [o for _, o in classes],
            "seen": [i in seen_ids for i in range(len(classes))],
            "attributes": att.tolist(),
        },
        features=features,
    )


def load_zsl_data(
    semantics: str = "attributes",
    *,
    seed: int = 0,
    n_train_per_class: int = 32,
    n_test_per_class: int = 50,
    backbone=None,
    cache_dir=None,
    batch_size: int = 256,
):
    """The "zsl" suite as a `hf_clipadapt.tzsl.ZSLData`: the testbed CLIP's normalised
    image features of ``train`` / ``test_seen`` / ``test_unseen`` and one semantic vector
    per class, offline. `semantics`: "attributes" (26-d one-hot colour ⊕ object) or
    "text" (the text tower's zero-shot classifier of the class names under
    `TESTBED_TEMPLATES`). `backbone`: default `load_testbed_clip()`; `cache_dir`: a
    feature cache folder (default: none). This is what `examples/tzsl_train.py
    --dataset testbed:zsl` trains on, and `benchmarks/tzsl/testbed_zsl.py` builds the
    same data."""
    import torch
    import torch.nn.functional as F

    from ..features import extract_features
    from ..tzsl import ZSLData
    from . import load_testbed_clip
    from .suites import load_suite
    from .world import TESTBED_TEMPLATES

    if semantics not in ("attributes", "text"):
        raise ValueError(f"unknown semantics {semantics!r}; use 'attributes' or 'text'")
    backbone = backbone if backbone is not None else load_testbed_clip()
    suite = load_suite("zsl", seed=seed, n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class)
    parts = {}
    for part in ("train", "test_seen", "test_unseen"):
        x, y = extract_features(
            backbone.encode_images,
            suite[part],
            backbone.image_transform(),
            split=f"zsl/{part}",
            batch_size=batch_size,
            cache_dir=cache_dir,
            cache_name=backbone.cache_name,
        )
        parts[f"{part}_features"], parts[f"{part}_labels"] = F.normalize(x.float(), dim=-1), y
    table = suite["classes"]
    if semantics == "attributes":
        vectors = torch.tensor(table["attributes"], dtype=torch.float32)
    else:
        with torch.no_grad():
            vectors = backbone.zero_shot_classifier(table["name"], TESTBED_TEMPLATES).float()
    seen = [i for i, s in enumerate(table["seen"]) if s]
    unseen = [i for i, s in enumerate(table["seen"]) if not s]
    return ZSLData(
        **parts, attributes=vectors, seen_classes=seen, unseen_classes=unseen, class_names=list(table["name"])
    )
