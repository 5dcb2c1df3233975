"""Downstream task suites over held-out data, as `datasets.DatasetDict`s.

Every suite renders scenes from the real MNIST / Fashion-MNIST **test** images
(which pretraining never saw). Within a suite, the training pool uses the first
half of each object's test images and the evaluation splits the second half, so
no real image is shared between a train and a test split.

Every split's ``info.dataset_name`` is ``"testbed:<suite>"``: model cards name it, and
the testbed registers its training augmentation under "testbed" (no flips; see
`hf_clipadapt.data.register_dataset_augmentation`), which `fit` follows unless told otherwise.

Columns (all suites): ``image`` (PIL, 48×48 RGB), ``label`` (`ClassLabel` whose
names are the class names the text tower understands, e.g. "sneaker" or
"red sneaker"), and the scene attributes ``object``, ``colour``, ``size``,
``position``, ``background``, ``style`` (strings).

Suites (`load_suite(name)`):

``"few_shot"``
    16 object classes (`KNOWN_OBJECTS`), seen (colour, object) combinations only.
    Splits ``train`` (a pool of `n_train_per_class` per class; sample k shots
    from it with `hf_clipadapt.data.sample_few_shot`) and ``test``.
``"base_to_new"``
    Colour-object classes ("red sneaker"). Base: 2 seen colours per known object
    (32 classes). New: the 2 held-out colours per known object (32 classes,
    `held_out_combinations()`), pairs never rendered nor captioned in pretraining
    although each word was (a `WEB_NAMES` object as its web name). Splits
    ``train`` and ``test_base`` (base label space) and ``test_new`` (new label
    space); the class lists are in each split's ``features["label"].names``.
``"open_set"``
    Known: the 16 known objects. Unknown: the 4 `UNKNOWN_OBJECTS`, never shown nor
    named in pretraining. Splits ``train`` (known only) and ``test`` (known and
    unknown). In ``test`` unknown samples have ``label == -1`` (`UNKNOWN_LABEL`;
    `ClassLabel` treats -1 as "no label") and ``is_unknown == True``; the
    ``object`` column still names them. For `metrics.h_score`, map -1 to K.
``"domain_shift"``
    16 object classes in two rendering styles: ``train`` / ``test`` clean (the
    source domain), ``target_train`` / ``target_test`` noisy (heavy pixel noise;
    the target domain, ``target_train`` meant to be used without its labels).
``"zsl"``
    Compositional zero-shot learning: 160 (colour, object) classes, 128 seen (the
    pairs pretraining used) and 32 unseen (`held_out_combinations()`). Splits
    ``train`` (seen classes), ``test_seen``, ``test_unseen``, all labelled with the
    global class id, and ``classes``: one row per class with its ``name``,
    ``colour``, ``object``, ``seen`` flag and ``attributes`` (one-hot colour ⊕
    one-hot object, 26-d). See `hf_clipadapt.testbed.zsl`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from .world import (
    COLOUR_NAMES,
    KNOWN_OBJECTS,
    UNKNOWN_OBJECTS,
    SceneWorld,
    colour_offsets,
    held_out_combinations,
    seen_combinations,
)

SUITES = ("few_shot", "base_to_new", "open_set", "domain_shift", "zsl")
UNKNOWN_LABEL = -1
_TRAIN_PART, _TEST_PART = (0.0, 0.5), (0.5, 1.0)
_ATTRS = ("object", "colour", "size", "position", "background")


@lru_cache(maxsize=1)
def _offline_test_world() -> SceneWorld:
    return SceneWorld.from_offline("test")


def base_combinations(objects=KNOWN_OBJECTS) -> list[tuple[str, str]]:
    """The base classes of "base_to_new": colours (3i+2) and (3i+5) mod 10 of object i
    (seen in pretraining; the held-out ones are 3i and 3i+1)."""
    return colour_offsets(objects, (2, 5))


def combination_name(colour: str, obj: str) -> str:
    """The class name of a (colour, object) pair: "red sneaker"."""
    return f"{colour} {obj}"


def _render(world, classes, labels, names, per_class, seed, style, part, mark_unknown=False) -> Dataset:
    """`per_class` scenes for each class; a class is a list of admissible (colour, object)
    pairs, drawn uniformly. Rows are shuffled with a fixed seed."""
    rows = {k: [] for k in ("image", "label", *_ATTRS, "style")}
    for c_idx, (combos, label) in enumerate(zip(classes, labels)):
        scenes = world.sample(per_class, seed + [c_idx], combinations=combos, style=style, sprite_part=part)
        rows["image"] += list(world.render(scenes))
        for a in _ATTRS:
            rows[a] += list(getattr(scenes, a))
        rows["style"] += [style] * per_class
        rows["label"] += [label] * per_class
    cols = {"image": Image(), "label": ClassLabel(names=names)}
    cols.update({a: Value("string") for a in (*_ATTRS, "style")})
    if mark_unknown:
        rows["is_unknown"] = [label == UNKNOWN_LABEL for label in rows["label"]]
        cols["is_unknown"] = Value("bool")
    order = np.random.default_rng(seed + [99]).permutation(len(rows["label"]))
    rows = {k: [v[i] for i in order] for k, v in rows.items()}
    return Dataset.from_dict(rows, features=Features(cols))


def _base_to_new_suite(world, known, seeds: list[int], ntr: int, nte: int) -> DatasetDict:
    """The "base_to_new" suite: base (colour, object) classes for training and testing, held-out
    combinations as new classes."""
    base, new = base_combinations(known), held_out_combinations(known)
    base_names = [combination_name(*c) for c in base]
    new_names = [combination_name(*c) for c in new]
    b_cls, n_cls = [[c] for c in base], [[c] for c in new]
    b_lab, n_lab = list(range(len(base))), list(range(len(new)))
    return DatasetDict(
        train=_render(world, b_cls, b_lab, base_names, ntr, [*seeds, 0], "clean", _TRAIN_PART),
        test_base=_render(world, b_cls, b_lab, base_names, nte, [*seeds, 1], "clean", _TEST_PART),
        test_new=_render(world, n_cls, n_lab, new_names, nte, [*seeds, 2], "clean", _TEST_PART),
    )


def load_suite(
    name: str,
    seed: int = 0,
    *,
    n_train_per_class: int = 32,
    n_test_per_class: int = 50,
    world: SceneWorld | None = None,
) -> DatasetDict:
    """Build one downstream suite (see the module docstring for splits and columns).

    Args:
        name: one of `SUITES`.
        seed: draws the scenes (objects' images, colours where free, size, position,
            background, noise); the class structure does not depend on it.
        n_train_per_class / n_test_per_class: scenes per class in the training pool /
            in each evaluation split (the open-set unknowns get `n_test_per_class` each).
        world: a `SceneWorld` to render from; default the real MNIST / Fashion-MNIST
            test images (`SceneWorld.from_offline("test")`). Tests pass tiny sprites.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {SUITES}")
    if n_train_per_class < 1 or n_test_per_class < 1:
        raise ValueError("n_train_per_class and n_test_per_class must be >= 1")
    world = world if world is not None else _offline_test_world()
    known = [o for o in KNOWN_OBJECTS if o in world.sprites]
    if not known:
        raise ValueError(f"the world holds none of the known objects {KNOWN_OBJECTS}; got {world.objects}")
    seen = set(seen_combinations(known))
    sid = SUITES.index(name)
    suite = _build_suite(name, world, known, seen, seed, sid, n_train_per_class, n_test_per_class)
    for split in suite.values():  # names the suite (cards) and registers its augmentation (no flips)
        split.info.dataset_name = f"testbed:{name}"
    return suite


def _build_suite(name, world, known, seen, seed, sid, ntr, nte) -> DatasetDict:
    def objects_split(objects, per_class, split_id, style, part, mark_unknown=False):
        # Object classes: each scene draws one of the object's seen colours (any colour for an unknown).
        classes = [[(c, o) for c in COLOUR_NAMES if (c, o) in seen or o not in known] for o in objects]
        labels = [known.index(o) if o in known else UNKNOWN_LABEL for o in objects]
        return _render(
            world, classes, labels, list(known), per_class, [seed, sid, split_id], style, part, mark_unknown
        )

    if name == "few_shot":
        return DatasetDict(
            train=objects_split(known, ntr, 0, "clean", _TRAIN_PART),
            test=objects_split(known, nte, 1, "clean", _TEST_PART),
        )
    if name == "base_to_new":
        return _base_to_new_suite(world, known, [seed, sid], ntr, nte)
    if name == "zsl":
        return _zsl_suite(world, known, [seed, sid], ntr, nte)
    if name == "open_set":
        unknown = [o for o in UNKNOWN_OBJECTS if o in world.sprites]
        if not unknown:
            raise ValueError(f"the open-set suite needs sprites for the unknown objects {UNKNOWN_OBJECTS}")
        return DatasetDict(
            train=objects_split(known, ntr, 0, "clean", _TRAIN_PART),
            test=objects_split(known + unknown, nte, 1, "clean", _TEST_PART, mark_unknown=True),
        )
    return DatasetDict(  # domain_shift
        train=objects_split(known, ntr, 0, "clean", _TRAIN_PART),
        test=objects_split(known, nte, 1, "clean", _TEST_PART),
        target_train=objects_split(known, ntr, 2, "noisy", _TRAIN_PART),
        target_test=objects_split(known, nte, 3, "noisy", _TEST_PART),
    )


def _zsl_suite(world, known, seed, ntr, nte) -> DatasetDict:
    """The "zsl" suite: seen / unseen (colour, object) classes, global labels, a class table."""
    from .zsl import zsl_class_table, zsl_classes, zsl_split_ids

    classes = zsl_classes(known)
    names = [combination_name(*c) for c in classes]
    seen, unseen = zsl_split_ids(known)
    split = lambda ids, n, split_id, part: _render(  # noqa: E731
        world, [[classes[i]] for i in ids], ids, names, n, seed + [split_id], "clean", part
    )
    return DatasetDict(
        train=split(seen, ntr, 0, _TRAIN_PART),
        test_seen=split(seen, nte, 1, _TEST_PART),
        test_unseen=split(unseen, nte, 2, _TEST_PART),
        classes=zsl_class_table(known, names),
    )
