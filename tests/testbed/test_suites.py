import numpy as np
import pytest

from hf_clipadapt.testbed import (
    KNOWN_OBJECTS,
    UNKNOWN_LABEL,
    UNKNOWN_OBJECTS,
    base_combinations,
    combination_name,
    held_out_combinations,
    load_suite,
    seen_combinations,
)


@pytest.fixture(scope="module")
def suites(world):
    names = ("few_shot", "base_to_new", "open_set", "domain_shift")
    return {n: load_suite(n, seed=0, n_train_per_class=2, n_test_per_class=3, world=world) for n in names}


def _names(split):
    return split.features["label"].names


def test_few_shot(suites):
    d = suites["few_shot"]
    assert set(d) == {"train", "test"}
    assert _names(d["train"]) == list(KNOWN_OBJECTS) == _names(d["test"])
    assert len(d["train"]) == 2 * 16 and len(d["test"]) == 3 * 16
    seen = set(seen_combinations())
    for split in d.values():
        assert set(zip(split["colour"], split["object"])) <= seen
        assert [KNOWN_OBJECTS[y] for y in split["label"]] == split["object"]
        assert split[0]["image"].size == (48, 48)


def test_base_to_new_classes_are_disjoint_and_new_ones_held_out(suites):
    d = suites["base_to_new"]
    assert set(d) == {"train", "test_base", "test_new"}
    base, new = base_combinations(), held_out_combinations()
    assert _names(d["train"]) == _names(d["test_base"]) == [combination_name(*c) for c in base]
    assert _names(d["test_new"]) == [combination_name(*c) for c in new]
    assert not set(_names(d["test_base"])) & set(_names(d["test_new"]))
    assert set(base) <= set(seen_combinations())
    # new classes are made of words seen in base classes, never of unseen words
    assert {w for n in _names(d["test_new"]) for w in n.split()} <= {
        w for c, o in seen_combinations() for w in (c, *o.split())
    }
    for split in ("train", "test_base", "test_new"):
        ds = d[split]
        names = _names(ds)
        assert [names[y] for y in ds["label"]] == [combination_name(c, o) for c, o in zip(ds["colour"], ds["object"])]


def test_open_set_unknowns(suites):
    d = suites["open_set"]
    train, test = d["train"], d["test"]
    assert _names(train) == _names(test) == list(KNOWN_OBJECTS)
    assert UNKNOWN_LABEL not in train["label"]
    labels, objects, flags = np.array(test["label"]), np.array(test["object"]), np.array(test["is_unknown"])
    assert set(objects[labels == UNKNOWN_LABEL]) == set(UNKNOWN_OBJECTS)
    assert (flags == (labels == UNKNOWN_LABEL)).all()
    assert not set(objects[labels >= 0]) & set(UNKNOWN_OBJECTS)
    assert flags.sum() == 3 * len(UNKNOWN_OBJECTS)
    # unknown class names are never label names
    assert not set(UNKNOWN_OBJECTS) & set(_names(test))


def test_domain_shift_styles(suites):
    d = suites["domain_shift"]
    assert set(d) == {"train", "test", "target_train", "target_test"}
    assert set(d["train"]["style"]) == set(d["test"]["style"]) == {"clean"}
    assert set(d["target_train"]["style"]) == set(d["target_test"]["style"]) == {"noisy"}
    assert all(_names(s) == list(KNOWN_OBJECTS) for s in d.values())


def test_suite_is_deterministic_per_seed(world):
    a = load_suite("few_shot", seed=3, n_train_per_class=1, n_test_per_class=1, world=world)
    b = load_suite("few_shot", seed=3, n_train_per_class=1, n_test_per_class=1, world=world)
    c = load_suite("few_shot", seed=4, n_train_per_class=1, n_test_per_class=1, world=world)
    img = lambda d: np.stack([np.asarray(x) for x in d["test"]["image"]])  # noqa: E731
    np.testing.assert_array_equal(img(a), img(b))
    assert a["test"]["label"] == b["test"]["label"]
    assert not np.array_equal(img(a), img(c))


def test_bad_suite_name(world):
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("imagenet", world=world)


# --- the 'testbed:<suite>' dataset spec every example accepts ---
from datasets import DatasetDict  # noqa: E402

from hf_clipadapt.data import load_image_dataset  # noqa: E402


@pytest.fixture()
def tiny_suites(monkeypatch, world):
    """Route "testbed:<suite>" to the synthetic-sprite world (no dataset files)."""
    import hf_clipadapt.testbed.suites as suites

    monkeypatch.setattr(suites, "_offline_test_world", lambda: world)
    return suites


def test_testbed_spec_loads_the_suite_with_its_seed(tiny_suites):
    data = load_image_dataset("testbed:few_shot@3")
    expected = tiny_suites.load_suite("few_shot", seed=3)
    assert isinstance(data, DatasetDict) and set(data) == {"train", "test"}
    assert data["test"]["object"] == expected["test"]["object"]
    assert data["test"]["object"] != tiny_suites.load_suite("few_shot", seed=0)["test"]["object"]
    assert (
        load_image_dataset("testbed:open_set")["test"].features["label"].names
        == expected["train"].features["label"].names
    )


@pytest.mark.parametrize("spec, match", [("testbed:fewshot", "unknown testbed suite"), ("testbed:few_shot@x", "seed")])
def test_bad_testbed_specs_say_what_is_accepted(spec, match):
    with pytest.raises(ValueError, match=match):
        load_image_dataset(spec)
