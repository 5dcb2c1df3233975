import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hf_clipadapt  # noqa: F401  (registers the Auto classes)
from hf_clipadapt.tzsl import PRESETS, TZSLConfig, TZSLModel, TZSLTrainingArguments


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_kwargs):
    torch.manual_seed(0)
    model = TZSLModel.from_data(tiny_data, "fast", **tiny_kwargs)
    history = model.fit(tiny_data, seed=0, progress=False).history_
    return model, history


def test_transductive_training_recovers_unseen_classes_well_above_chance(fitted, tiny_data):
    model, history = fitted
    scores = model.evaluate(tiny_data)
    chance = 100.0 / len(tiny_data.unseen_classes)
    # This tiny run is noisy: with 3 unseen classes one misplaced class costs 33 points. Over
    # seeds 0-7 the ZSL accuracy averages 61.3 and spans 27.8-68.3 with the reference-faithful
    # losses (seed 0: 58.9); the hand-written loop of commit 7230ca9 gave 69.7 (59-86) and the
    # first Trainer version 62.0 (47-68), whose adversarial phase is bit-identical to the
    # loop's from the same RNG state: the loop's own seeds 8-15 average 63.5, so those gaps
    # are seed noise (benchmarks/tzsl/RESULTS.md, last section). chance+25 (58.3) would hold on
    # seed 0 by 0.6 points only, so the margin stays chance+10, checked on seed 0. GZSL is what
    # the fixes moved: H averages 60.7 and is at least 45.5 on every seed (18.5 and 40.6
    # before), so H > 40 is asserted.
    assert scores["zsl_accuracy"] > chance + 10, scores
    assert scores["h_score"] > 40, scores
    assert scores["seen_accuracy"] > 80, scores
    assert len(history["epochs"]) == 3  # the configured, fixed length: no selection
    assert history["decoder_pretrain"][-1] < history["decoder_pretrain"][0]
    assert model.critic_unseen is not None and model.critic_unseen.conditional


def test_forward_gives_logits_over_all_classes(fitted, tiny_data):
    model, _ = fitted
    out = model(tiny_data.test_unseen_features[:5])
    assert out.logits.shape == (5, tiny_data.num_classes)
    assert out.pseudo_attributes.shape == (5, tiny_data.attributes.shape[1])
    zsl = model(tiny_data.test_unseen_features[:5], task="zsl").logits
    assert torch.isinf(zsl[:, tiny_data.seen_classes]).all() and torch.isfinite(zsl[:, tiny_data.unseen_classes]).all()
    with pytest.raises(ValueError, match="task"):
        model(tiny_data.test_unseen_features[:5], task="both")


def test_save_and_load_keep_generator_classifier_and_scaling(fitted, tiny_data, tmp_path):
    model, _ = fitted
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").exists() and "c9" in (tmp_path / "README.md").read_text()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "tzsl"
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, TZSLModel) and isinstance(AutoConfig.from_pretrained(tmp_path), TZSLConfig)
    x = torch.cat([tiny_data.test_seen_features[:8], tiny_data.test_unseen_features[:8]])
    torch.testing.assert_close(loaded.predict_logits(x), model.predict_logits(x))
    torch.testing.assert_close(loaded.feature_max, model.feature_max)
    assert loaded.feature_min.dtype == torch.float32
    torch.testing.assert_close(loaded.generator.fc2.weight, model.generator.fc2.weight)
    assert loaded.evaluate(tiny_data) == model.evaluate(tiny_data)


def test_wrong_feature_width_for_a_loaded_model(fitted, tiny_data, tmp_path):
    model, _ = fitted
    model.save_pretrained(tmp_path)
    loaded = TZSLModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"features of shape \[N, 16\], got \(3, 12\)"):
        loaded(torch.randn(3, 12))


def test_modes_switch_the_second_critic(tiny_data, tiny_kwargs):
    assert TZSLModel.from_data(tiny_data, "fast", mode="inductive", **tiny_kwargs).critic_unseen is None
    uncond = TZSLModel.from_data(tiny_data, "fast", conditional_d2=False, **tiny_kwargs)
    assert not uncond.critic_unseen.conditional
    assert uncond.critic_unseen.net[0].in_features == tiny_data.feature_dim


def test_inductive_and_pseudo_prior_modes_train(tiny_data, tiny_kwargs):
    m = TZSLModel.from_data(tiny_data, "fast", mode="inductive", **{**tiny_kwargs, "epochs": 1, "steps_per_epoch": 5})
    m.fit(tiny_data, progress=False)
    assert torch.isfinite(m.predict_logits(tiny_data.test_unseen_features)).all()
    p = TZSLModel.from_data(
        tiny_data,
        "fast",
        conditional_d2=False,
        unseen_prior="pseudo",
        **{**tiny_kwargs, "epochs": 1, "steps_per_epoch": 5},
    )
    p.fit(tiny_data, progress=False)
    assert p.unseen_prior.sum().item() == pytest.approx(1.0) and not torch.allclose(
        p.unseen_prior, torch.full((3,), 1 / 3)
    )


def test_bad_input_raises_clear_errors(tiny_data, tiny_kwargs):
    model = TZSLModel.from_data(tiny_data, "fast", **tiny_kwargs)
    with pytest.raises(RuntimeError, match="not fitted"):
        model(tiny_data.test_unseen_features)
    with pytest.raises(ValueError, match="mode must be"):
        TZSLConfig(mode="semi")
    with pytest.raises(ValueError, match="unknown preset"):
        TZSLConfig.from_preset("imagenet")
    with pytest.raises(ValueError, match="unseen_prior"):
        TZSLConfig(unseen_prior="test")  # the true test prior is not an option
    other = TZSLModel(
        TZSLConfig.from_preset("fast", feature_dim=16, attribute_dim=5, num_classes=10, unseen_classes=[8, 9])
    )
    with pytest.raises(ValueError, match=r"data.attributes is \(11, 5\)"):
        other.fit(tiny_data, progress=False)


def test_presets_follow_the_published_hyperparameters():
    cub = TZSLConfig.from_preset("cub", attribute_dim=312)
    training = TZSLTrainingArguments.from_preset("cub")
    assert (
        training.num_train_epochs,
        cub.hidden_dim,
        training.critic_iters,
        training.gp_weight,
        training.syn_num,
    ) == (300, 4096, 5, 10.0, 300)
    assert cub.latent_dim == 312 and cub.feedback
    assert set(PRESETS) == {"cub", "awa2", "sun", "flo", "fast"}
