"""Parity of TZSL's weighted L1, feedback path and attribute normalisation with the authors' code,
in float64.

The references re-derive in NumPy float64 what mrflogs/icassp23 (a MindSpore port whose
structure follows akshitac8/tfvaegan) computes:
- `WeightedL1(pred, gt)` (train.py, lines 34-38): wt = (pred - gt)^2, divided row-wise by
  sqrt(sum_d wt) = ||pred - gt||_2; loss = sum(wt * |pred - gt|) / N;
- the attribute decoder `AttDec` (model.py, lines 83-99): hidden = lrelu(fc1(x)),
  out = fc3(hidden) / ||fc3(hidden)||_2; `getLayersOutDet` hands out the hidden detached;
- the feedback path (train.py, lines 279-284, with `Generator.construct`, model.py, lines
  42-57, and `Feedback`, lines 105-115): x0 = sigmoid(fc3(lrelu(fc1([z; c])))),
  fb = lrelu(F.fc2(lrelu(F.fc1(hidden_Dec(x0))))), x = sigmoid(fc3(lrelu(fc1([z; c])) + a1 * fb));
- the encoder (model.py, lines 19-25): lrelu(fc1([x; c])), lrelu(fc3(.)), then the two heads;
- attribute normalisation (util.py, lines 46-48): columns to unit L2 norm, then rows;
- the adaptive gradient-penalty weight (train.py, lines 239-243).
They are compared with the library's functional core and with the model's modules and
decoder loss, the model cast to float64.
"""

import numpy as np
import pytest
import torch

from hf_clipadapt.tzsl import TZSLConfig, TZSLModel
from hf_clipadapt.tzsl import functional as Fz
from hf_clipadapt.tzsl.training import _DecoderObjective


# ---------------------------------------------------------------- float64 reference (NumPy)
def _lrelu(x):
    return np.where(x > 0, x, 0.2 * x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _dense(layer, x):
    return x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()


def official_weighted_l1(pred, gt):
    """train.py lines 34-38."""
    wt = (pred - gt) ** 2
    wt = wt / np.sqrt(wt.sum(1))[:, None]
    return float((wt * np.abs(pred - gt)).sum() / len(pred))


def official_decoder(dec, x):
    """model.py lines 83-95 (embedSz = 0, no sigmoid): returns (out, hidden)."""
    hidden = _lrelu(_dense(dec.fc1, x))
    h = _dense(dec.fc2, hidden)
    return h / np.sqrt((h**2).sum(1))[:, None], hidden


def official_feedback_generation(model, z, c, a1):
    """train.py lines 279-284: G once, Dec's detached hidden through F, G again with the feedback."""
    g, fb_net = model.generator, model.feedback.net
    x0 = _sigmoid(_dense(g.fc2, _lrelu(_dense(g.fc1, np.concatenate([z, c], 1)))))
    _, hidden = official_decoder(model.decoder, x0)
    feedback = _lrelu(_dense(fb_net[2], _lrelu(_dense(fb_net[0], hidden))))
    return _sigmoid(_dense(g.fc2, _lrelu(_dense(g.fc1, np.concatenate([z, c], 1))) + a1 * feedback))


def official_encoder(enc, x, c):
    """model.py lines 19-25."""
    h = _lrelu(_dense(enc.body[2], _lrelu(_dense(enc.body[0], np.concatenate([x, c], 1)))))
    return _dense(enc.mu, h), _dense(enc.logvar, h)


def official_attribute_normalisation(att):
    """util.py lines 46-48."""
    att = att / np.sqrt((att**2).sum(0))[None, :]
    return att / np.sqrt((att**2).sum(1))[:, None]


def official_gp_weights(lambda1, mean_penalties):
    """train.py lines 239-243, one update per round of critic steps."""
    out = []
    for p in mean_penalties:
        if p > 1.05:
            lambda1 *= 1.1
        elif p < 1.001:
            lambda1 /= 1.1
        out.append(lambda1)
    return out


# ---------------------------------------------------------------- comparisons
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = TZSLConfig(
        feature_dim=12,
        attribute_dim=5,
        num_classes=6,
        hidden_dim=16,
        decoder_hidden_dim=8,
        unseen_classes=[4, 5],
        feedback=True,
    )
    m = TZSLModel(cfg).double()
    with torch.no_grad():  # larger weights than the N(0, 0.02) init, so every term matters
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    return m


def test_weighted_l1_matches_the_reference():
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = Fz.weighted_l1(torch.from_numpy(pred), torch.from_numpy(gt)).item()
    assert got == pytest.approx(official_weighted_l1(pred, gt), rel=1e-12)


def test_decoder_loss_matches_the_reference(model):
    rng = np.random.default_rng(1)
    x, att = rng.uniform(size=(9, 12)), official_attribute_normalisation(rng.uniform(size=(9, 5)))
    out, _ = official_decoder(model.decoder, x)
    got = _DecoderObjective(model.decoder)(torch.from_numpy(x), torch.from_numpy(att))["loss"].item()
    assert got == pytest.approx(official_weighted_l1(out, att), rel=1e-12)


@pytest.mark.parametrize("a1", [1.0, 0.01])
def test_feedback_generation_matches_the_reference(model, a1):
    rng = np.random.default_rng(2)
    z, c = rng.normal(size=(6, 5)), rng.uniform(size=(6, 5))
    zt, ct = torch.from_numpy(z), torch.from_numpy(c)
    got = model._generate(zt, ct, a1)
    np.testing.assert_allclose(
        got.detach().numpy(), official_feedback_generation(model, z, c, a1), rtol=1e-12, atol=1e-14
    )
    model.zero_grad(set_to_none=True)
    got.sum().backward()  # getLayersOutDet: no gradient reaches the decoder through the feedback
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.feedback.parameters())


def test_encoder_matches_the_reference(model):
    rng = np.random.default_rng(3)
    x, c = rng.uniform(size=(4, 12)), rng.uniform(size=(4, 5))
    mu, logvar = model.encoder(torch.from_numpy(x), torch.from_numpy(c))
    ref_mu, ref_logvar = official_encoder(model.encoder, x, c)
    np.testing.assert_allclose(mu.detach().numpy(), ref_mu, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(logvar.detach().numpy(), ref_logvar, rtol=1e-12, atol=1e-13)


def test_attribute_normalisation_matches_the_reference():
    att = np.random.default_rng(4).uniform(0, 100, size=(10, 7))  # raw xlsa17 attributes are 0-100
    np.testing.assert_allclose(
        Fz.normalize_attributes(torch.from_numpy(att)).numpy(), official_attribute_normalisation(att), rtol=1e-13
    )


def test_fitted_class_attributes_match_the_reference():
    from tests.tzsl.conftest import synthetic_zsl

    data = synthetic_zsl(per_class=4)
    data.attributes = data.attributes.abs() * 50  # attribute scores, as in xlsa17
    m = TZSLModel.from_data(data, "fast", hidden_dim=8, decoder_hidden_dim=8)
    m._prepare_training(data, None, torch.device("cpu"))
    ref = official_attribute_normalisation(data.attributes.double().numpy())
    np.testing.assert_allclose(m.class_attributes.double().numpy(), ref, rtol=1e-6, atol=1e-7)  # float32 buffer


def test_adaptive_gp_weight_follows_the_reference():
    penalties = [1.2, 1.3, 1.02, 0.5, 0.999, 1.051, 1.001]
    ours, w = [], 10.0
    for p in penalties:
        w = Fz.adapt_gp_weight(w, p)
        ours.append(w)
    np.testing.assert_allclose(ours, official_gp_weights(10.0, penalties), rtol=1e-15)
