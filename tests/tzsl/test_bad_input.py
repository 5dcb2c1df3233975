"""Bad input to TZSL that a newcomer gives (issue 27): refused early, with what to do."""

import dataclasses

import pytest
import torch
from datasets import Dataset

from hf_clipadapt.tzsl import TZSLModel, ZSLData


def _data(**changes):
    x = torch.randn(4, 3)
    parts = dict(
        train_features=x.clone(),
        train_labels=torch.tensor([0, 1, 0, 1]),
        test_seen_features=x.clone(),
        test_seen_labels=torch.tensor([0, 1, 1, 0]),
        test_unseen_features=x.clone(),
        test_unseen_labels=torch.tensor([2, 3, 2, 3]),
        attributes=torch.randn(4, 2),
        seen_classes=[0, 1],
        unseen_classes=[2, 3],
    )
    return ZSLData(**{**parts, **changes})


def test_a_datasets_column_as_class_names_becomes_a_list_and_saves(tmp_path):
    # a Column used to be kept as given, and saving the model's config failed on it
    column = Dataset.from_dict({"name": ["cat", "dog", "owl", "yak"]})["name"]
    data = _data(class_names=column)
    assert data.class_names == ["cat", "dog", "owl", "yak"] and type(data.class_names) is list
    model = TZSLModel.from_data(data)
    model.save_pretrained(tmp_path / "saved")
    assert TZSLModel.from_pretrained(tmp_path / "saved").config.class_names == ["cat", "dog", "owl", "yak"]


@pytest.mark.parametrize(
    "names, match", [("catdogowlyak", "single string"), (["cat", 2, "owl", "yak"], r"positions \[1\] hold \['int'\]")]
)
def test_class_names_that_are_not_a_list_of_strings_are_refused(names, match):
    with pytest.raises(TypeError, match=match):
        _data(class_names=names)


def test_an_empty_unlabelled_pool_is_named_in_transductive_mode(tiny_data, tiny_kwargs):
    # used to fail inside training with "random_ expects 'from' to be less than 'to'"
    empty = dataclasses.replace(
        tiny_data,
        test_unseen_features=tiny_data.test_unseen_features[:0],
        test_unseen_labels=tiny_data.test_unseen_labels[:0],
    )
    model = TZSLModel.from_data(empty, **tiny_kwargs)
    with pytest.raises(
        ValueError, match=r"the pool is empty \(data.test_unseen_features has 0 rows\).*mode='inductive'"
    ):
        model.fit(empty)
    with pytest.raises(ValueError, match=r"unlabelled_features has 0 rows"):
        TZSLModel.from_data(tiny_data, **tiny_kwargs).fit(
            tiny_data, unlabelled_features=torch.zeros(0, tiny_data.feature_dim)
        )
