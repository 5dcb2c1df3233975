"""Bad input to SFDA that a newcomer gives (issue 27): clear errors, early."""

import time

import pytest
import torch

from hf_clipadapt.sfda import SFDAForImageClassification


class _Pooled(torch.nn.Module):
    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, pixel_values):
        return self.conv(pixel_values).mean((2, 3))


def test_pixel_values_as_a_list_is_a_clear_type_error():
    model = SFDAForImageClassification.from_backbone(_Pooled(), num_labels=2, bottleneck_dim=4).eval()
    with pytest.raises(TypeError, match=r"pixel_values must be a torch.Tensor \[batch, 3, H, W\], got list"):
        model(pixel_values=list(torch.zeros(2, 3, 8, 8)))


def test_an_unreachable_hub_fails_fast_for_a_backbone_id(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(OSError, match="'nobody/no-such-backbone' is not a local folder nor in the Hugging Face cache"):
        SFDAForImageClassification.from_backbone("nobody/no-such-backbone", num_labels=2)
    assert time.perf_counter() - start < 10
