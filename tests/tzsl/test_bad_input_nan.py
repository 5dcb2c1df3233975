"""NaN in TZSL features or attributes: a clear error at ZSLData, not an obscure one in training."""

import pytest
import torch

from hf_clipadapt.tzsl import ZSLData


def _parts():
    x = torch.randn(4, 3)
    return dict(
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


@pytest.mark.parametrize("part", ["train_features", "test_unseen_features", "attributes"])
def test_nan_or_inf_is_refused_with_the_rows(part):
    parts = _parts()
    parts[part][2, 1] = float("nan")
    parts[part][3, 0] = float("inf")
    with pytest.raises(ValueError, match=rf"{part} holds NaN or inf in 2 row\(s\) \(first: \[2, 3\]\).*impute"):
        ZSLData(**parts)
    ZSLData(**_parts())  # finite data still builds
