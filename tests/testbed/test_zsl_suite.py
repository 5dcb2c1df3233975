"""The compositional zero-shot suite: class structure, attribute matrix, determinism."""

import numpy as np
import pytest

from hf_clipadapt.testbed import (
    COLOUR_NAMES,
    KNOWN_OBJECTS,
    SUITES,
    combination_name,
    held_out_combinations,
    load_suite,
    seen_combinations,
    zsl_attributes,
    zsl_classes,
    zsl_split_ids,
)


@pytest.fixture(scope="module")
def zsl(world):
    return load_suite("zsl", seed=0, n_train_per_class=1, n_test_per_class=2, world=world)


def test_classes_are_every_pair_split_into_seen_and_held_out_unseen(zsl):
    assert "zsl" in SUITES and set(zsl) == {"train", "test_seen", "test_unseen", "classes"}
    classes = zsl_classes(KNOWN_OBJECTS)
    assert len(classes) == 160 and len(set(classes)) == 160
    seen, unseen = zsl_split_ids(KNOWN_OBJECTS)
    assert (len(seen), len(unseen)) == (128, 32)
    assert not set(seen) & set(unseen) and sorted(seen + unseen) == list(range(160))
    assert {classes[i] for i in seen} == set(seen_combinations())
    assert {classes[i] for i in unseen} == set(held_out_combinations())
    names = zsl["train"].features["label"].names
    assert names == zsl["test_unseen"].features["label"].names == [combination_name(*c) for c in classes]
    table = zsl["classes"]
    assert table["name"] == names and table["label"] == list(range(160))
    assert [i for i, s in enumerate(table["seen"]) if s] == seen


def test_image_splits_hold_their_classes_only(zsl):
    seen, unseen = zsl_split_ids(KNOWN_OBJECTS)
    assert set(zsl["train"]["label"]) == set(zsl["test_seen"]["label"]) == set(seen)
    assert set(zsl["test_unseen"]["label"]) == set(unseen)
    assert (len(zsl["train"]), len(zsl["test_seen"]), len(zsl["test_unseen"])) == (128, 256, 64)
    for split in ("train", "test_seen", "test_unseen"):
        ds = zsl[split]
        names = ds.features["label"].names
        assert [names[y] for y in ds["label"]] == [combination_name(c, o) for c, o in zip(ds["colour"], ds["object"])]


def test_attribute_matrix_is_one_hot_colour_then_one_hot_object(zsl):
    att = np.array(zsl["classes"]["attributes"], dtype=np.float32)
    assert att.shape == (160, 26)
    np.testing.assert_array_equal(att, zsl_attributes(KNOWN_OBJECTS))
    assert (att[:, :10].sum(1) == 1).all() and (att[:, 10:].sum(1) == 1).all()
    names = zsl["classes"]["name"]
    for name, colour, obj in (
        ("red t-shirt", 0, 0),
        ("brown t-shirt", 9, 0),
        ("blue sneaker", 2, KNOWN_OBJECTS.index("sneaker")),
    ):
        expected = np.zeros(26, dtype=np.float32)
        expected[colour], expected[10 + obj] = 1, 1
        np.testing.assert_array_equal(att[names.index(name)], expected, err_msg=name)
    assert COLOUR_NAMES[2] == "blue" and KNOWN_OBJECTS[0] == "t-shirt"
    # Two classes share a colour or an object exactly when their attribute vectors overlap.
    assert att[names.index("red t-shirt")] @ att[names.index("red sneaker")] == 1
    assert att[names.index("red t-shirt")] @ att[names.index("blue sneaker")] == 0


def test_zsl_suite_is_deterministic_by_seed(world):
    kw = dict(n_train_per_class=1, n_test_per_class=1, world=world)
    a, b, c = load_suite("zsl", seed=5, **kw), load_suite("zsl", seed=5, **kw), load_suite("zsl", seed=6, **kw)
    for split in ("train", "test_unseen"):
        assert a[split]["label"] == b[split]["label"] and a[split]["position"] == b[split]["position"]
        assert np.array_equal(np.asarray(a[split][0]["image"]), np.asarray(b[split][0]["image"]))
    assert a["train"]["position"] != c["train"]["position"] or a["train"]["size"] != c["train"]["size"]
    assert a["classes"]["attributes"] == c["classes"]["attributes"], "the class structure does not depend on the seed"


def test_zsl_suite_follows_the_objects_the_world_holds(sprites):
    """A world with fewer known objects gives fewer classes and a narrower attribute matrix."""
    from hf_clipadapt.testbed import SceneWorld

    objects = KNOWN_OBJECTS[:3]
    d = load_suite(
        "zsl", seed=0, n_train_per_class=1, n_test_per_class=1, world=SceneWorld({o: sprites[o] for o in objects})
    )
    assert len(d["classes"]) == 30 and len(d["classes"][0]["attributes"]) == 13
    assert sum(d["classes"]["seen"]) == 24 and len(d["test_unseen"]) == 6
