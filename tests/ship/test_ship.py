"""SHIP's generator: the VAE loss by hand, decoding through the shared soft-prompt path,
generation, and what it saves."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.ship import SHIPGenerator, kl_to_standard_normal, vae_loss
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    assert_initialised,
    save_tiny_clip,
    tiny_clip_model,
    tiny_clip_tokenizer,
    tiny_image_processor,
)

BASE = ["cat", "dog", "car"]
SMALL = dict(encoder_hidden_dim=16, bias_hidden_dim=16)


def generator(**kw):
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    torch.manual_seed(0)
    return SHIPGenerator.from_clip(clip, BASE, **{**SMALL, **kw})


def test_kl_and_vae_loss_against_a_hand_computation():
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]], dtype=torch.float64)
    # KL(N(m, s²) || N(0, 1)) = ½ (s² + m² − 1 − log s²), summed over dimensions
    by_hand = [
        0.5 * (1 + 0.25 - 1 - 0) + 0.5 * (4 + 1 - 1 - math.log(4)),
        0.5 * (0.25 + 0 - 1 - math.log(0.25)) + 0.5 * (1 + 4 - 1 - 0),
    ]
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), torch.tensor(by_hand, dtype=torch.float64))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    recon = torch.tensor([[0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    total, rec, kl = vae_loss(recon, x, mu, logvar)
    assert rec.item() == pytest.approx(((0.4**2 + 0.8**2) + 0.0) / 2)
    assert kl.item() == pytest.approx(sum(by_hand) / 2)
    assert total.item() == pytest.approx(rec.item() + kl.item())


def test_decoding_equals_the_shared_soft_prompt_path_per_class():
    """A sample's reconstruction is the soft-prompt text feature of its own class with
    context p + r(z), the same as taking that class's row of the all-classes pass."""
    g = generator()
    z = torch.randn(2, g.config.latent_dim)
    labels = torch.tensor([2, 0])
    tokens = g.class_tokens(BASE)
    got = g.decode(z, tokens, labels)
    context = g.ctx.unsqueeze(0) + g.bias_mlp(z).unsqueeze(1)  # [2, L, W]
    full = g.text_encoder(context.unsqueeze(1).expand(2, 3, *context.shape[1:]), tokens)  # [2, 3, D]
    torch.testing.assert_close(got, full[torch.arange(2), labels], rtol=1e-5, atol=1e-6)


def test_gradients_reach_only_the_generator():
    g = generator()
    x = F.normalize(torch.randn(4, g.config.embed_dim), dim=-1)
    g(image_features=x, labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    with_grad = {n for n, p in g.named_parameters() if p.grad is not None}
    assert with_grad == set(g.saved_state_dict()), "exactly the saved parts train"
    assert not any(p.requires_grad for p in g.backbone.parameters())


def test_generated_features_are_unit_norm_depend_on_the_name_and_the_seed():
    g = generator()
    feats, labels = g.generate(["bird", "fish"], n_per_class=4, seed=3)
    assert feats.shape == (8, g.config.embed_dim) and labels.tolist() == [0] * 4 + [1] * 4
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(8))
    again, _ = g.generate(["bird", "fish"], n_per_class=4, seed=3)
    assert torch.equal(feats, again), "same seed, same features"
    swapped, _ = g.generate(["fish", "bird"], n_per_class=4, seed=3)
    assert not torch.allclose(swapped[:4], feats[:4], atol=1e-4), "the class name changes the features"
    with pytest.raises(ValueError, match="n_per_class"):
        g.generate(["bird"], n_per_class=0)


def test_save_load_keeps_generation_and_leaves_the_text_tower_out(tmp_path):
    clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "clip"))
    g = SHIPGenerator.from_clip(clip, BASE, **SMALL)
    g.save_pretrained(tmp_path / "ship")
    loaded = SHIPGenerator.from_pretrained(tmp_path / "ship")
    assert torch.equal(loaded.generate(["bird"], 3, seed=1)[0], g.generate(["bird"], 3, seed=1)[0])
    assert not any("text_model" in k for k in g.saved_state_dict())


class TestSHIPContract(AdaptedModelTesterMixin):
    """The battery on SHIP's generator. It generates features and classifies nothing, so its
    "logits" here are generated features (seeded), and the classifier checks are skipped."""

    model_class = SHIPGenerator
    pipeline_task = None  # a feature generator, not an image classifier
    max_saved_bytes = 40_000  # encoder, bias net and 4 prompt vectors: never the text tower
    fit_kwargs = {"views": 1, "args": {"max_steps": 1}}

    def make_model(self, tmp_path):
        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
        torch.manual_seed(0)
        model = SHIPGenerator.from_clip(clip, list(self.class_names), **SMALL)
        with torch.no_grad():  # a generator away from its initialisation, as after training
            model.ctx.add_(0.05 * torch.randn_like(model.ctx))
        model.config.is_fitted = True
        return model

    def make_unfitted_model(self, tmp_path):
        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "fresh-clip"))
        return SHIPGenerator.from_clip(clip, list(self.class_names), **SMALL)

    def make_inputs(self, model):
        return {
            "image_features": F.normalize(
                torch.randn(3, model.config.embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1
            ),
            "labels": torch.tensor([0, 1, 2]),
        }

    def logits(self, model, inputs):
        return model.generate(["bird", "red"], 2, seed=1)[0]

    def check_initialisation(self, model):
        # the paper's code: N(0, 0.02²) Linear weights, zero biases; prompt vectors N(0, ctx_std²)
        for name, layer in model.named_modules():
            if isinstance(layer, torch.nn.Linear) and not name.startswith("backbone"):
                assert_initialised(layer.weight, name, mean=0.0, std=0.02)
                assert_initialised(layer.bias, f"{name}.bias", mean=0.0, std=0)
        assert_initialised(model.ctx, "ctx", mean=0.0, std=model.config.ctx_std)

    def test_return_dict_false_gives_a_tuple(self, tmp_path):
        model = self.make_model(tmp_path)
        out = model.train()(**self.make_inputs(model), return_dict=False)
        assert isinstance(out, tuple) and out[0].ndim == 0  # the VAE loss first

    def test_evaluate_reports_the_shared_metric_names(self, tmp_path):
        pytest.skip("SHIP's generator classifies nothing; the models it trains (fit_with_synthesized) are evaluated")

    def test_for_classes_keeps_the_trained_parts(self, tmp_path):
        pytest.skip(
            "SHIP's generator already generates for any class name (generate); it has no classifier to rebuild"
        )

    def test_forward_before_fit(self, tmp_path):
        pytest.skip(
            "the generator's forward is its VAE training pass; using an unfitted generator is refused where "
            "it matters, in fit_with_synthesized (tests/ship/test_synthesis.py::test_refusals)"
        )
