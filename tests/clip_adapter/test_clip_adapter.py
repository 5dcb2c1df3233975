"""CLIP-Adapter: the residual blend against a hand computation, and the shared battery."""

import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.clip_adapter.functional import adapter_mlp, clip_adapter_logits
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    PIL_image,
    assert_close_scaled,
    assert_initialised,
    save_tiny_clip,
)


def test_logits_against_a_hand_computation_in_float64():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(3, 8, generator=g, dtype=torch.float64), dim=-1)
    adapter = adapter_mlp(8, reduction=4).double()
    w1, w2 = adapter[0].weight, adapter[2].weight
    refined = torch.relu(torch.relu(x @ w1.T) @ w2.T)
    mixed = 0.2 * refined + 0.8 * x
    expected = 30.0 * (mixed / mixed.norm(dim=-1, keepdim=True)) @ text.T
    torch.testing.assert_close(clip_adapter_logits(x, adapter, text, 0.2, 30.0), expected, rtol=1e-12, atol=1e-12)


def test_ratio_zero_is_zero_shot():
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    assert_close_scaled(clip_adapter_logits(x, adapter_mlp(8), text, 0.0, 10.0), 10.0 * x @ text.T, rtol=1e-5)


class TestCLIPAdapterContract(AdaptedModelTesterMixin):
    model_class = CLIPAdapterForImageClassification
    max_saved_bytes = 4_000
    fit_kwargs = {"shots": 2, "views": 1, "args": {"max_steps": 1}}

    def check_initialisation(self, model):
        # PyTorch's default Linear initialisation, as the paper's code: U(±1/√fan_in), no bias
        for name, layer in model.adapter.named_modules():
            if isinstance(layer, torch.nn.Linear):
                assert_initialised(layer.weight, f"adapter.{name}", bound=layer.in_features**-0.5)
                assert layer.bias is None

    def make_model(self, tmp_path):
        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
        model = CLIPAdapterForImageClassification.from_clip(clip, ["red", "green", "blue"])
        model.config.is_fitted = True
        return model

    def make_inputs(self, model):
        return {"pixel_values": model.backbone.preprocess([PIL_image(seed=s) for s in range(4)])}
