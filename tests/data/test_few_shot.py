import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hf_clipadapt.data import class_names, sample_few_shot


def labelled(counts, class_label=True):
    """A dataset with `counts[c]` rows of class c and a unique `uid` per row (no images: fast)."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    label_feature = ClassLabel(names=[f"class{c}" for c in range(len(counts))]) if class_label else Value("int64")
    features = Features({"uid": Value("int64"), "label": label_feature})
    return Dataset.from_dict({"uid": list(range(len(labels))), "label": labels}, features=features)


def per_class(split):
    return np.bincount(split["label"][:]).tolist()


def test_shots_per_class_and_default_validation():
    ds = labelled([10, 12, 9])
    out = sample_few_shot(ds, shots=4)
    assert isinstance(out, DatasetDict) and set(out) == {"train", "validation"}
    assert per_class(out["train"]) == [4, 4, 4]
    assert per_class(out["validation"]) == [4, 4, 4]  # min(K, 4)
    assert per_class(sample_few_shot(ds, shots=2)["validation"]) == [2, 2, 2]
    assert per_class(sample_few_shot(ds, shots=5)["validation"]) == [4, 4, 4]


def test_train_and_validation_are_disjoint_rows_of_the_input():
    ds = labelled([10, 10])
    out = sample_few_shot(ds, shots=3, val_shots=5)
    train, val = set(out["train"]["uid"][:]), set(out["validation"]["uid"][:])
    assert not train & val
    # Rows keep their labels (the split is a selection, not a relabelling).
    for split in out.values():
        for uid, label in zip(split["uid"][:], split["label"][:]):
            assert ds[uid]["label"] == label


def test_deterministic_per_seed_and_seeds_differ():
    ds = labelled([30, 30, 30])
    a, b = sample_few_shot(ds, 4, seed=1), sample_few_shot(ds, 4, seed=1)
    assert a["train"]["uid"][:] == b["train"]["uid"][:]
    assert a["validation"]["uid"][:] == b["validation"]["uid"][:]
    assert a["train"]["uid"][:] != sample_few_shot(ds, 4, seed=2)["train"]["uid"][:]


def test_every_example_can_be_drawn():
    # The draw is uniform within a class, not "the first K": over seeds it covers the class.
    ds = labelled([8])
    seen = set()
    for seed in range(20):
        seen |= set(sample_few_shot(ds, 2, seed=seed, val_shots=0)["train"]["uid"][:])
    assert seen == set(range(8))


def test_val_shots_zero_and_int_labels():
    out = sample_few_shot(labelled([3, 5], class_label=False), shots=3, val_shots=0)
    assert per_class(out["train"]) == [3, 3] and len(out["validation"]) == 0


def test_labels_read_through_select_and_shuffle():
    ds = labelled([10, 10, 10]).shuffle(seed=0).select(range(24))
    out = sample_few_shot(ds, 2)
    assert per_class(out["train"]) == [2, 2, 2]
    for uid, label in zip(out["train"]["uid"][:], out["train"]["label"][:]):
        assert label == uid // 10


def test_imagefolder(tmp_path):
    from datasets import load_dataset
    from PIL import Image

    for name, n in [("cat", 5), ("dog", 6)]:
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / "data" / "train" / name / f"{i}.png")
    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "data"), split="train", cache_dir=str(tmp_path / "cache"))
    out = sample_few_shot(ds, shots=2, seed=3)
    assert class_names(out["train"]) == ["cat", "dog"]
    assert per_class(out["train"]) == [2, 2] and per_class(out["validation"]) == [2, 2]
    assert out["train"][0]["image"].size == (4, 4)


def test_too_few_examples_names_the_class_and_suggests_val_shots_zero():
    ds = labelled([10, 5, 10])
    with pytest.raises(ValueError, match=r"'class1' \(5\).*val_shots=0"):
        sample_few_shot(ds, shots=4)  # needs 4 + 4
    assert per_class(sample_few_shot(ds, shots=4, val_shots=0)["train"]) == [4, 4, 4]


def test_too_few_examples_says_which_shots_fit():
    """fit(shots=K) and the examples' --shots cannot pass val_shots: the error names the
    largest K that keeps a validation split, and the Python route without one."""
    ds = labelled([10, 5, 10])
    with pytest.raises(
        ValueError,
        match=r"at most 2 with a validation split, e.g. --shots 2.*shots=4, val_shots=0\), and pass it to fit",
    ):
        sample_few_shot(ds, shots=4)  # 2 + min(2, 4) <= 5 < 3 + 3
    with pytest.raises(ValueError, match=r"at most 3 with a validation split"):
        sample_few_shot(ds, shots=4, val_shots=2)  # an explicit val_shots: 3 + 2 <= 5


def test_declared_but_absent_class_is_an_error():
    ds = labelled([5, 0, 5])
    with pytest.raises(ValueError, match=r"'class1' \(0\)"):
        sample_few_shot(ds, shots=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shots=0), "shots must be a positive"),
        (dict(shots=2, val_shots=-1), "val_shots must be"),
        (dict(shots=2, label_column="target"), "no label column 'target'.*label_column="),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_few_shot(labelled([10, 10]), **kwargs)


def test_bad_dataset_errors():
    with pytest.raises(ValueError, match="empty"):
        sample_few_shot(labelled([]), shots=1)
    with pytest.raises(TypeError, match="ds\\['train'\\]"):
        sample_few_shot(DatasetDict(train=labelled([5])), shots=1)
    strings = Dataset.from_dict({"label": ["cat", "dog"]})
    with pytest.raises(TypeError, match="class_encode_column"):
        sample_few_shot(strings, shots=1)
    unlabelled = Dataset.from_dict({"label": [0, -1, 1]})
    with pytest.raises(ValueError, match="negative.*filter"):
        sample_few_shot(unlabelled, shots=1)


def test_class_names():
    assert class_names(labelled([1, 1])) == ["class0", "class1"]
    assert class_names(DatasetDict(test=labelled([1, 1, 1]))) == ["class0", "class1", "class2"]
    with pytest.raises(TypeError, match="not a ClassLabel.*cast_column"):
        class_names(labelled([1, 1], class_label=False))
