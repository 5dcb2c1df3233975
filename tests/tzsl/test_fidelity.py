"""TZSL against its reference code (mrflogs/icassp23, which follows akshitac8/tfvaegan): each
test pins one behaviour that an earlier version of the library got wrong."""

import math

import pytest
import torch

from hf_clipadapt.tzsl import TZSLModel
from hf_clipadapt.tzsl import functional as Fz
from hf_clipadapt.tzsl import training as T

FEEDBACK = dict(
    hidden_dim=16,
    decoder_hidden_dim=8,
    batch_size=16,
    syn_num=10,
    decoder_pretrain_epochs=1,
    cls_epochs=1,
    critic_iters=1,
    lr=1e-3,
    feedback_lr=1e-3,
    feedback=True,
)


def test_weighted_l1_normalises_by_the_error_norm():
    # e = (3, 4): ||e|| = 5, w = (9, 16) / 5, loss = (9*3 + 16*4) / 5 = 91 / 5 (was 91 / sqrt(337))
    pred, target = torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.zeros(2, 2)
    assert Fz.weighted_l1(pred, target).item() == pytest.approx(91.0 / 5.0 / 2.0)


def test_attributes_are_normalised_per_column_then_per_row(tiny_data, tiny_kwargs):
    a = torch.tensor([[3.0, 0.0], [4.0, 2.0]])
    cols = torch.tensor([[3 / 5, 0.0], [4 / 5, 1.0]])
    want = cols / cols.norm(dim=1, keepdim=True)
    torch.testing.assert_close(Fz.normalize_attributes(a), want)
    model = TZSLModel.from_data(tiny_data, "fast", **tiny_kwargs)
    model._prepare_training(tiny_data, None, torch.device("cpu"))
    torch.testing.assert_close(model.class_attributes, Fz.normalize_attributes(tiny_data.attributes))
    assert not torch.allclose(model.class_attributes, torch.nn.functional.normalize(tiny_data.attributes, dim=-1))


def test_encoder_has_the_extra_layer_to_twice_the_latent_width(tiny_data, tiny_kwargs):
    enc = TZSLModel.from_data(tiny_data, "fast", **tiny_kwargs).encoder
    linears = [m for m in enc.body if isinstance(m, torch.nn.Linear)]
    latent = tiny_data.attributes.shape[1]
    assert [lin.out_features for lin in linears] == [tiny_kwargs["hidden_dim"], 2 * latent]
    assert isinstance(enc.body[-1], torch.nn.LeakyReLU) and enc.mu.in_features == 2 * latent


def test_feedback_ends_in_leaky_relu_and_sees_the_decoder_hidden_detached(tiny_data):
    model = TZSLModel.from_data(tiny_data, "fast", **FEEDBACK)
    h = torch.randn(64, 8)
    out = model.feedback(h)
    last = [m for m in model.feedback.modules() if isinstance(m, torch.nn.Linear)][-1]
    pre = last(
        torch.nn.functional.leaky_relu(
            [m for m in model.feedback.modules() if isinstance(m, torch.nn.Linear)][0](h), 0.2
        )
    )
    torch.testing.assert_close(out, torch.nn.functional.leaky_relu(pre, 0.2))
    assert (out < 0).any()  # a LeakyReLU output, not a linear one
    z, a = torch.randn(4, model.config.latent_dim), torch.randn(4, model.config.attribute_dim)
    model._generate(z, a, 1.0).sum().backward()
    assert model.decoder.fc1.weight.grad is None  # no gradient reaches the decoder through the feedback
    assert model.feedback.net[0].weight.grad is not None and model.generator.fc1.weight.grad is not None


def test_two_passes_per_epoch_feedback_only_in_the_second(tiny_data, monkeypatch):
    calls = []
    forward = T._GeneratorObjective.forward

    def spy(self, features, attributes, fb_seen=0.0, fb_unseen=0.0):
        calls.append((fb_seen, fb_unseen))
        return forward(self, features, attributes, fb_seen, fb_unseen)

    monkeypatch.setattr(T._GeneratorObjective, "forward", spy)
    torch.manual_seed(0)
    model = TZSLModel.from_data(
        tiny_data,
        "fast",
        **FEEDBACK,
        epochs=1,
        steps_per_epoch=3,
        feedback_passes=2,
        feedback_train_weight=0.5,
        feedback_eval_weight=0.25,
    )
    start = {k: v.clone() for k, v in model.feedback.state_dict().items()}
    history = model.fit(tiny_data, seed=0, progress=False).history_
    assert calls == [(0.0, 0.0)] * 3 + [(0.5, 0.25)] * 3
    assert any(not torch.equal(v, start[k]) for k, v in model.feedback.state_dict().items())
    assert len(history["epochs"]) == 1


def test_gradient_penalty_weight_adapts():
    assert Fz.adapt_gp_weight(10.0, 1.2) == pytest.approx(11.0)
    assert Fz.adapt_gp_weight(10.0, 0.5) == pytest.approx(10.0 / 1.1)
    assert Fz.adapt_gp_weight(10.0, 1.02) == 10.0


def test_training_moves_the_penalty_weight(tiny_data):
    torch.manual_seed(0)
    model = TZSLModel.from_data(tiny_data, "fast", **{**FEEDBACK, "feedback": False}, epochs=2, steps_per_epoch=4)
    history = model.fit(tiny_data, seed=0, progress=False).history_
    weights = [e["gp_weight"] for e in history["epochs"]]
    # 8 rounds of critic steps, each moving lambda by a factor 1.1 either way (or not at all)
    assert weights[-1] != 10.0 and all(
        math.isclose(math.log(w / 10.0) / math.log(1.1) % 1, 0, abs_tol=1e-6)
        or math.isclose(math.log(w / 10.0) / math.log(1.1) % 1, 1, abs_tol=1e-6)
        for w in weights
    )
    fixed = TZSLModel.from_data(
        tiny_data, "fast", **{**FEEDBACK, "feedback": False}, epochs=1, steps_per_epoch=2, adaptive_gp=False
    )
    assert fixed.fit(tiny_data, seed=0, progress=False).history_["epochs"][-1]["gp_weight"] == 10.0


def test_encoder_adam_uses_torch_default_betas_generator_and_feedback_beta1_half(tiny_data):
    model = TZSLModel.from_data(tiny_data, "fast", **FEEDBACK)
    x_s, y_s = torch.rand(32, tiny_data.feature_dim), torch.zeros(32, dtype=torch.long)
    args = T.adam_arguments(epochs=1, batch_size=16, lr=1e-3, seed=0, progress=False)
    trainer = T.TZSLGANTrainer(
        model,
        args,
        x_s=x_s,
        y_s=y_s,
        x_u=None,
        unseen_idx=torch.tensor([8, 9, 10]),
        decoder_optimizer=torch.optim.Adam(model.decoder.parameters()),
    )
    groups = trainer.create_optimizer().param_groups
    betas = {id(p): g["betas"] for g in groups for p in g["params"]}
    assert all(betas[id(p)] == (0.9, 0.999) for p in model.encoder.parameters())
    assert all(betas[id(p)] == (0.5, 0.999) for p in [*model.generator.parameters(), *model.feedback.parameters()])


def _short_fit(data, monkeypatch, **overrides):
    """A 2-step adversarial phase; returns (decoder optimiser steps, encoder calls) in phase 2."""
    from hf_clipadapt.tzsl import modeling_tzsl as M

    counts = {"dec_steps": 0, "enc_calls": 0}
    pretrain = M.pretrain_decoder

    def counting_pretrain(model, x_s, a_s, **kw):
        history, opt = pretrain(model, x_s, a_s, **kw)
        step = opt.step

        def counted(*a, **k):
            counts["dec_steps"] += 1
            return step(*a, **k)

        opt.step = counted
        model.encoder.register_forward_hook(lambda *_: counts.__setitem__("enc_calls", counts["enc_calls"] + 1))
        return history, opt

    monkeypatch.setattr(M, "pretrain_decoder", counting_pretrain)
    torch.manual_seed(0)
    cfg = {**FEEDBACK, "feedback": False, "epochs": 1, "steps_per_epoch": 2, "critic_iters": 2, **overrides}
    TZSLModel.from_data(data, "fast", **cfg).fit(data, seed=0, progress=False)
    return counts["dec_steps"], counts["enc_calls"]


def test_decoder_steps_on_the_generator_loss_unless_frozen(tiny_data, monkeypatch):
    # per generator step: critic_iters decoder steps on real pairs (+1 on the generator loss)
    assert _short_fit(tiny_data, monkeypatch, freeze_decoder=False)[0] == 2 * (2 + 1)
    assert _short_fit(tiny_data, monkeypatch, freeze_decoder=True)[0] == 2 * 2


def test_critic_fakes_come_from_the_encoded_noise(tiny_data, monkeypatch):
    # per generator step: the generator step's encoder pass (+1 per critic step with encoded noise)
    assert _short_fit(tiny_data, monkeypatch, encoded_noise=True)[1] == 2 * (1 + 2)
    assert _short_fit(tiny_data, monkeypatch, encoded_noise=False)[1] == 2 * 1
