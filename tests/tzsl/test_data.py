import numpy as np
import pytest
import torch
from scipy.io import savemat

from hf_clipadapt.metrics import gzsl_scores, per_class_accuracy
from hf_clipadapt.tzsl import ZSLData, load_features_file, load_xlsa17, pseudo_unseen_split, save_features_file


def write_xlsa17(root, drop=None):
    """A 4-class, 10-image xlsa17 fixture in MATLAB layout (columns, 1-based)."""
    rng = np.random.default_rng(0)
    labels = np.array([1, 1, 2, 2, 3, 3, 4, 4, 1, 2])  # 1-based; classes 3, 4 (1-based) unseen
    feats = rng.normal(size=(10, 5)).astype(np.float32)
    feats[:, 0] = np.arange(10)  # feature 0 = image index, to check the ordering
    att = rng.normal(size=(4, 3))
    res = {"features": feats.T, "labels": labels[:, None]}
    spl = {
        "att": att.T,
        "trainval_loc": np.array([[1], [2], [3], [9]]),
        "test_seen_loc": np.array([[4], [10]]),
        "test_unseen_loc": np.array([[5], [6], [7], [8]]),
        "allclasses_names": np.array([["a"], ["b"], ["c"], ["d"]], dtype=object),
    }
    for d in (res, spl):
        d.pop(drop, None)
    savemat(root / "res101.mat", res)
    savemat(root / "att_splits.mat", spl)
    return feats, labels, att


def test_xlsa17_loader_transposes_and_converts_one_based_indices(tmp_path):
    feats, labels, att = write_xlsa17(tmp_path)
    d = load_xlsa17(tmp_path)
    assert d.train_features[:, 0].tolist() == [0, 1, 2, 8]
    assert d.train_labels.tolist() == [0, 0, 1, 0]
    assert d.test_seen_features[:, 0].tolist() == [3, 9] and d.test_seen_labels.tolist() == [1, 1]
    assert d.test_unseen_labels.tolist() == [2, 2, 3, 3]
    torch.testing.assert_close(d.test_unseen_features, torch.from_numpy(feats[4:8]))
    torch.testing.assert_close(d.attributes, torch.from_numpy(att).float())
    assert d.seen_classes == [0, 1] and d.unseen_classes == [2, 3] and d.class_names == ["a", "b", "c", "d"]
    dd = d.to_dataset_dict()
    assert set(dd) == {"train", "test_seen", "test_unseen"} and dd["test_unseen"][:]["label"].tolist() == [2, 2, 3, 3]


@pytest.mark.parametrize("key", ["features", "att", "test_unseen_loc"])
def test_xlsa17_missing_key_is_named(tmp_path, key):
    write_xlsa17(tmp_path, drop=key)
    with pytest.raises(KeyError, match=key):
        load_xlsa17(tmp_path)


def _parts(n_classes_att=4, seen=(0, 1), unseen=(2, 3)):
    x = torch.randn(4, 3)
    return dict(
        train_features=x,
        train_labels=torch.tensor([0, 1, 0, 1]),
        test_seen_features=x,
        test_seen_labels=torch.tensor([0, 1, 1, 0]),
        test_unseen_features=x,
        test_unseen_labels=torch.tensor([2, 3, 2, 3]),
        attributes=torch.randn(n_classes_att, 2),
        seen_classes=list(seen),
        unseen_classes=list(unseen),
    )


def test_bad_splits_raise_clear_errors():
    with pytest.raises(ValueError, match="attributes has 3 rows but the classes go up to id 3"):
        ZSLData(**_parts(n_classes_att=3))
    with pytest.raises(ValueError, match="overlap: \\[1\\]"):
        ZSLData(**_parts(seen=(0, 1), unseen=(1, 2, 3)))
    bad = _parts()
    bad["train_labels"] = torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match="train has labels \\[2\\] outside"):
        ZSLData(**bad)
    bad = _parts()
    bad["test_seen_features"] = torch.randn(4, 5)
    with pytest.raises(ValueError, match="same feature width"):
        ZSLData(**bad)


def test_features_file_roundtrip(tmp_path):
    d = ZSLData(**_parts(), class_names=list("abcd"))
    save_features_file(d, tmp_path / "f.safetensors")
    e = load_features_file(tmp_path / "f.safetensors")
    torch.testing.assert_close(e.attributes, d.attributes)
    assert e.unseen_classes == [2, 3] and e.class_names == list("abcd")
    assert not list(tmp_path.glob("*.tmp"))


def test_pseudo_unseen_split_uses_seen_classes_only(tiny_data):
    v = pseudo_unseen_split(tiny_data, num_holdout=2, seed=1)
    assert set(v.unseen_classes) <= set(tiny_data.seen_classes) and len(v.unseen_classes) == 2
    assert not set(v.train_labels.tolist()) & set(v.unseen_classes)
    assert not set(v.test_unseen_labels.tolist()) & set(tiny_data.unseen_classes)
    assert (
        v.train_features.shape[0] + v.test_seen_features.shape[0] + v.test_unseen_features.shape[0]
        == tiny_data.train_features.shape[0]
    )
    with pytest.raises(ValueError, match="num_holdout"):
        pseudo_unseen_split(tiny_data, num_holdout=len(tiny_data.seen_classes))


def test_per_class_accuracy_and_gzsl_h_on_a_constructed_confusion():
    # Seen {0, 1}, unseen {2}. Class 0: 4/4 right; class 1: 2/4; class 2: 1/2 (one to seen 0).
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 0, 1, 1, 0, 2, 2, 0])
    assert per_class_accuracy(preds, labels) == pytest.approx(100 * (1 + 0.5 + 0.5) / 3)
    g = gzsl_scores(preds, labels, seen_classes=[0, 1], unseen_classes=[2])
    assert g["seen"] == pytest.approx(75.0) and g["unseen"] == pytest.approx(50.0)
    assert g["H"] == pytest.approx(2 * 75 * 50 / 125)
