"""SFDA model: forward, unknown rule, save/load/push round trips, Auto classes, bad backbones."""

from unittest import mock

import pytest
import torch
from torch import nn

from hf_clipadapt.sfda import SFDAConfig, SFDAForImageClassification


class TinyPooledNet(nn.Module):
    """A plain torch backbone: pixel_values → [B, 6]."""

    feature_dim = 6

    def __init__(self, width: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)

    def forward(self, pixel_values):
        return self.conv(pixel_values).mean((2, 3))


class UnpooledNet(TinyPooledNet):
    """Forgets to pool: returns a feature map."""

    def forward(self, pixel_values):
        return self.conv(pixel_values)


def test_forward_returns_logits_and_features(tiny_dataset, make_model, to_pixels):
    model = make_model().eval()
    x = to_pixels(tiny_dataset[:5]["image"])
    out = model(pixel_values=x, labels=torch.tensor([0, 1, 2, 0, 1]))
    assert out.logits.shape == (5, 3) and out.features.shape == (5, 8)
    assert out.loss is not None and out.loss.ndim == 0
    assert model.head.norm.num_features == 8


def test_predict_unknown_rule_only_in_universal_mode(make_model):
    model = make_model().eval()
    with torch.no_grad():
        model.head.classifier.weight.zero_()
        model.head.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
    x = torch.randn(4, 3, 16, 16)
    assert model.is_universal
    assert model.predict(x).tolist() == [3, 3, 3, 3]  # uniform → H/log C = 1 > 0.5 → unknown index 3
    with torch.no_grad():
        model.head.classifier.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))  # confident class 0
    assert model.predict(x).tolist() == [0, 0, 0, 0]
    closed = make_model(strategy="shot").eval()
    with torch.no_grad():
        closed.head.classifier.weight.zero_()
    assert not closed.is_universal and (closed.predict(x) < 3).all()


def test_save_load_round_trip_with_auto_classes(tmp_path, make_model):
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    model = make_model(strategy="shot", unknown_threshold=0.4).eval()
    x = torch.randn(3, 3, 16, 16)
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    assert "source-free" in (tmp_path / "README.md").read_text()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SFDAConfig)
    for auto in (AutoModel, AutoModelForImageClassification):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, SFDAForImageClassification)
        assert loaded.config.strategy == "shot" and loaded.config.unknown_threshold == 0.4
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_torch_backbone_adapter_saves_its_weights(tmp_path):
    torch.manual_seed(1)
    net = TinyPooledNet()
    model = SFDAForImageClassification.from_backbone(
        net, num_labels=2, torch_backbone_kwargs={"width": 6}, bottleneck_dim=4
    )
    torch.testing.assert_close(model.backbone.module.conv.weight, net.conv.weight)  # pretrained weights kept
    model.eval().save_pretrained(tmp_path)
    loaded = SFDAForImageClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.torch_backbone.endswith(":TinyPooledNet")
    torch.testing.assert_close(loaded.backbone.module.conv.weight, net.conv.weight)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_push_to_hub_uploads_weights_then_card(make_model):
    model = make_model()
    uploads = []
    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=mock.Mock(repo_id="me/sfda")),
        mock.patch(
            "huggingface_hub.HfApi.create_commit",
            side_effect=lambda *a, **k: uploads.append([op.path_in_repo for op in k["operations"]]),
        ),
        mock.patch("huggingface_hub.HfApi.upload_file", side_effect=lambda **k: uploads.append(k)),
    ):
        model.push_to_hub("me/sfda")
    assert {"config.json", "model.safetensors"} <= set(uploads[0])
    card = uploads[-1]
    assert card["path_in_repo"] == "README.md" and b"hf_clipadapt" in card["path_or_fileobj"]


def test_bad_backbones(swin_config):
    from transformers import SwinModel

    no_pool = SwinModel(swin_config, add_pooling_layer=False)
    model = SFDAForImageClassification.from_backbone(no_pool, num_labels=3).eval()
    with pytest.raises(ValueError, match="no pooled output"):
        model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="feature_dim"):
        SFDAForImageClassification.from_backbone(nn.Conv2d(3, 4, 3), num_labels=2)
    with pytest.raises(ValueError, match="cannot rebuild the torch backbone"):
        SFDAForImageClassification.from_backbone(nn.Conv2d(3, 4, 3), num_labels=2, feature_dim=4)
    unpooled = SFDAForImageClassification.from_backbone(
        UnpooledNet(), num_labels=2, feature_dim=6, torch_backbone_kwargs={"width": 6}
    )
    with pytest.raises(ValueError, match=r"pooled features \[batch, dim\]"):
        unpooled(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="num_labels or id2label"):
        SFDAForImageClassification.from_backbone(no_pool)


def test_bad_config():
    with pytest.raises(ValueError, match="strategy"):
        SFDAConfig(strategy="dann")
    with pytest.raises(ValueError, match="model_selection"):
        SFDAConfig(model_selection="oracle")
    with pytest.raises(ValueError, match="backbone_feature_dim"):
        SFDAConfig(torch_backbone="x:Y")
