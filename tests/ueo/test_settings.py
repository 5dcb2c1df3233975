"""The four settings from a labelled dataset: which classes train, labels dropped, unknown = -1."""

import pytest

from hf_clipadapt.testing_utils import tiny_image_dataset
from hf_clipadapt.ueo.settings import SETTINGS, make_setting, setting_classes, split_classes

NAMES = ["a", "b", "c", "d", "e", "f"]


def data(seed):
    return tiny_image_dataset(6, 2, size=4, seed=seed, class_names=NAMES)


def test_setting_classes_follow_the_official_protocol():
    known, unknown = split_classes(NAMES, num_known=4)
    assert (known, unknown) == (["a", "b", "c", "d"], ["e", "f"])
    assert setting_classes("closed", known, unknown) == known
    assert setting_classes("partial", known, unknown) == ["a", "b", "c"]
    assert setting_classes("open", known, unknown) == ["a", "b", "c", "d", "e"]
    assert setting_classes("open_partial", known, unknown) == ["a", "b", "c", "e"]
    k2, u2 = split_classes(NAMES, num_known=4, seed=1)
    assert len(k2) == 4 and set(k2) | set(u2) == set(NAMES) and split_classes(NAMES, num_known=4, seed=1)[0] == k2


@pytest.mark.parametrize("setting", SETTINGS)
def test_make_setting(setting):
    out = make_setting(data(0), data(1), setting, num_known=4)
    train, test = out["train"], out["test"]
    assert train.column_names == ["image"]  # labels (and everything else) dropped
    expected = {"closed": 8, "partial": 6, "open": 10, "open_partial": 8}[setting]
    assert len(train) == expected
    assert test.features["label"].names == ["a", "b", "c", "d"]
    assert len(test) == 12 and sorted(set(test["label"])) == [-1, 0, 1, 2, 3]  # every class, in every setting
    assert test["is_unknown"] == [y == -1 for y in test["label"]]
    original = data(1)["label"]
    assert [NAMES[y] if y < 4 else None for y in original] == [NAMES[y] if y >= 0 else None for y in test["label"]]


def test_bad_splits():
    with pytest.raises(ValueError, match="num_known"):
        split_classes(NAMES, num_known=6)
    with pytest.raises(ValueError, match="not found"):
        split_classes(NAMES, known=["a", "zebra"])
    with pytest.raises(ValueError, match="setting must be one of"):
        make_setting(data(0), data(1), "universal", num_known=4)
    with pytest.raises(ValueError, match="ClassLabel"):
        make_setting(data(0).remove_columns("label"), data(1), "open", num_known=4)


def test_naming_unknown_classes_and_splitting_rows():
    from datasets import Value

    from hf_clipadapt.ueo.settings import name_unknown_classes, split_rows

    base = tiny_image_dataset(3, 2, size=4, class_names=["a", "b", "x"])
    objects = [["a", "b", "cat"][y] for y in base["label"]]
    open_set = base.map(lambda row: {"label": -1 if row["label"] == 2 else row["label"]})
    open_set = open_set.add_column("object", objects).cast_column("object", Value("string"))
    named = name_unknown_classes(open_set, "object")
    assert named.features["label"].names == ["a", "b", "x", "cat"]  # known ids unchanged, the unknown appended
    assert [named.features["label"].names[y] for y in named["label"]] == objects
    first, second = split_rows(named, 0.5, seed=0)
    assert len(first) + len(second) == len(named) and sorted(first["label"]) == sorted(second["label"])


def test_keep_labels_for_the_oracle_only():
    out = make_setting(data(0), data(1), "open", num_known=4, keep_labels=True)
    assert out["train"].column_names == ["image", "label"]
    assert out["train"].features["label"].names == ["a", "b", "c", "d"]
    assert sorted(set(out["train"]["label"])) == [-1, 0, 1, 2, 3]


# tim-learn/UEO demo.py lines 189-207 (VisDA-C) and 161-179 (Office-Home): tar_classes per setting.
OFFICIAL_VISDA = {
    "closed": list(range(8)),
    "partial": list(range(6)),
    "open": list(range(10)),
    "open_partial": [*range(6), 8, 9],
}
OFFICIAL_OFFICE_HOME = {
    "closed": list(range(50)),
    "partial": list(range(35)),
    "open": list(range(60)),
    "open_partial": [*range(35), *range(50, 60)],
}


@pytest.mark.parametrize(
    "preset, official, total", [("visda_c", OFFICIAL_VISDA, 12), ("office_home", OFFICIAL_OFFICE_HOME, 65)]
)
def test_split_presets_are_the_official_class_lists(preset, official, total):
    from hf_clipadapt.ueo import SPLIT_PRESETS, preset_classes

    names = [f"c{i}" for i in range(total)]
    for setting, ids in official.items():
        known, unknown, present = preset_classes(preset, setting, names)
        assert present == [names[i] for i in ids]
        assert known == names[: SPLIT_PRESETS[preset]["num_known"]] and unknown == names[len(known) :]
    assert SPLIT_PRESETS["office"]["open_partial"] == 15 and SPLIT_PRESETS["domainnet"]["open_unknown"] == 30


def test_make_setting_with_a_preset():
    names = [f"c{i}" for i in range(12)]
    data = tiny_image_dataset(12, 1, class_names=names)
    out = make_setting(data, data, "open_partial", preset="visda_c")
    assert out["test"].features["label"].names == names[:8] and len(out["train"]) == 8  # classes 0-5, 8, 9
    assert sum(out["test"]["is_unknown"]) == 4
    with pytest.raises(ValueError, match="splits 12 classes by position"):
        make_setting(tiny_image_dataset(5, 1), tiny_image_dataset(5, 1), "open", preset="visda_c")
    with pytest.raises(ValueError, match="unknown preset .* for UEO's class splits"):
        make_setting(data, data, "open", preset="office31")
    with pytest.raises(ValueError, match="without known="):
        make_setting(data, data, "open", preset="visda_c", num_known=3)
