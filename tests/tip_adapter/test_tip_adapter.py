"""Tip-Adapter: the closed form, the grid search, and the shared model battery."""

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.data import class_names, sample_few_shot
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    PIL_image,
    assert_close_scaled,
    save_tiny_clip,
    tiny_image_dataset,
)
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification, mean_view_keys, tip_adapter_logits

NAMES = ["red", "green", "blue"]


def fitted(tmp_path, **kw):
    backbone = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
    data = tiny_image_dataset(num_classes=3, per_class=6, class_names=NAMES)
    model = TipAdapterForImageClassification.from_clip(backbone, class_names(data), **kw)
    return model.fit(data, shots=2, views=2, seed=1, dataset_name="tiny-colours"), data


def test_logits_equal_the_closed_form_in_float64():
    """logit_scale·x·Tᵀ + α·exp(−β(1 − x·Fᵀ))·L, written out element by element."""
    g = torch.Generator().manual_seed(0)
    x, keys, text = (F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=-1) for n in (5, 6, 3))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    alpha, beta, scale = 2.0, 3.0, 20.0
    expected = torch.zeros(5, 3, dtype=torch.float64)
    for i in range(5):
        for k in range(3):
            votes = sum(torch.exp(-beta * (1 - x[i] @ keys[n])) for n in range(6) if labels[n] == k)
            expected[i, k] = scale * x[i] @ text[k] + alpha * votes
    got = tip_adapter_logits(x, keys, labels, 3, beta, alpha, zero_shot_logits=scale * x @ text.T)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_keys_are_normalised_means_of_the_views():
    feats = torch.arange(12, dtype=torch.float64).view(6, 2)  # 2 views x 3 images, view-major
    keys = mean_view_keys(feats, views=2)
    torch.testing.assert_close(keys, F.normalize((feats[:3] + feats[3:]) / 2, dim=-1))
    with pytest.raises(ValueError, match="whole number"):
        mean_view_keys(feats[:5], views=2)


def test_fit_builds_the_cache_and_picks_params_on_validation(tmp_path):
    model, data = fitted(tmp_path)
    split = sample_few_shot(data, shots=2, seed=1)
    assert model.config.cache_size == len(split["train"]) == 6
    assert model.cache_labels.tolist() == list(split["train"]["label"])
    torch.testing.assert_close(model.cache_keys.norm(dim=-1), torch.ones(6), rtol=0, atol=1e-5)
    # param_scores keeps the 10 best points of the 4,000-point grid, the chosen one first (4 significant digits)
    best = next(iter(model.config.param_scores))
    assert best == f"{model.config.alpha:.4g},{model.config.beta:.4g}"
    assert model.config.param_scores[best] == max(model.config.param_scores.values())
    assert not model.cache_keys.requires_grad, "training-free: the keys are buffers"
    x = model.backbone.encode_images(model.backbone.preprocess([PIL_image(seed=3)]))
    c = model.config
    expected = tip_adapter_logits(
        x, model.cache_keys, model.cache_labels, 3, c.beta, c.alpha, c.logit_scale * x @ model.text_weights.T
    )
    torch.testing.assert_close(
        model(image_features=x).logits, expected, rtol=1e-5, atol=1e-4 * expected.abs().max().item()
    )


def test_unfitted_model_is_zero_shot_and_warns(tmp_path):
    backbone = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "clip"))
    model = TipAdapterForImageClassification.from_clip(backbone, NAMES)
    x = F.normalize(torch.randn(2, backbone.embed_dim), dim=-1)
    with pytest.warns(UserWarning, match="not been fitted"):
        logits = model(image_features=x).logits
    assert_close_scaled(logits, model.config.logit_scale * x @ model.text_weights.T, rtol=1e-5)


class TestTipAdapterContract(AdaptedModelTesterMixin):
    model_class = TipAdapterForImageClassification
    max_saved_bytes = 4_000
    fit_kwargs = {"shots": 2, "views": 1}
    fit_keeps_history = False  # training-free by default (the cache is built, nothing is trained); -F logs

    def check_initialisation(self, model):
        import pytest

        pytest.skip(
            "Tip-Adapter's trained part, the cache, is built by fit from the training features: a fresh "
            "model has an empty cache (test_unfitted_model_is_zero_shot_and_warns)"
        )

    def make_model(self, tmp_path):
        return fitted(tmp_path)[0]

    def make_inputs(self, model):
        return {"pixel_values": model.backbone.preprocess([PIL_image(seed=s) for s in range(4)])}


def test_raw_key_averaging_is_a_saved_option_with_clear_errors(tmp_path):
    """key_averaging="raw" (Tip-Adapter utils.py L46-60: raw views averaged, then normalised):
    fit encodes unnormalised views (the parity test checks the keys); the option is kept
    by save/load and shown on the card; a bad value and normalised input are flagged."""
    with pytest.raises(ValueError, match="key_averaging must be one of"):
        TipAdapterForImageClassification.from_clip(
            CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "c")), NAMES, key_averaging="mean"
        )
    model, _ = fitted(tmp_path, key_averaging="raw", alphas=[1.0], betas=[1.0])
    torch.testing.assert_close(model.cache_keys.norm(dim=-1), torch.ones(6), rtol=0, atol=1e-5)
    assert "unnormalised (as the official code averages them)" in str(model.create_model_card())
    model.save_pretrained(tmp_path / "tip-raw")
    loaded = TipAdapterForImageClassification.from_pretrained(tmp_path / "tip-raw", backbone=model.backbone)
    assert loaded.config.key_averaging == "raw"
    torch.testing.assert_close(loaded.cache_keys, model.cache_keys, rtol=0, atol=0)
    normalised = F.normalize(torch.randn(6, model.config.embed_dim), dim=-1)
    with pytest.warns(UserWarning, match="already L2-normalised"):
        model.fit_features(normalised, torch.tensor([0, 1, 2]).repeat(2), views=2)


def test_raw_views_are_cached_apart_from_normalised_ones(tmp_path):
    backbone = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
    data = tiny_image_dataset(num_classes=3, per_class=6, class_names=NAMES)
    run = dict(shots=2, views=2, seed=1)
    grid = dict(alphas=[1.0], betas=[1.0])
    uncached = TipAdapterForImageClassification.from_clip(backbone, NAMES, key_averaging="raw", **grid).fit(
        data, **run
    )
    cache = tmp_path / "features"
    TipAdapterForImageClassification.from_clip(backbone, NAMES, **grid).fit(data, cache_dir=cache, **run)
    raw = TipAdapterForImageClassification.from_clip(backbone, NAMES, key_averaging="raw", **grid)
    raw.fit(data, cache_dir=cache, **run)  # must not read the normalised views cached just before
    assert len(list(cache.glob("*.safetensors"))) == 3  # train views (normalised, raw) + validation
    torch.testing.assert_close(raw.cache_keys, uncached.cache_keys, rtol=0, atol=0)
