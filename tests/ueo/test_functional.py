"""UEO's loss, weights and OOD scores against hand computations (float64)."""

import math

import pytest
import torch

from hf_clipadapt.metrics import auroc
from hf_clipadapt.ueo import functional as UF


def hand_entropy(p, eps=0.0):
    return -sum(x * math.log(x + eps) for x in p if x > 0)


def hand_softmax(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    return [x / sum(e) for x in e]


def hand_ueo(logits, weights, trade, eps=0.0):
    probs = [hand_softmax(r) for r in logits]
    cond = sum(w * hand_entropy(p, eps) for w, p in zip(weights, probs)) / sum(weights)
    inv = [1 / w for w in weights]
    marginal = [sum(i * p[k] for i, p in zip(inv, probs)) / sum(inv) for k in range(len(probs[0]))]
    return cond - trade * hand_entropy(marginal, eps)


def test_ueo_loss_matches_a_hand_computation():
    logits = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0], [1.0, 1.0, 1.0]]
    weights = [0.9, 0.35, 0.99, 1 / 3]
    for trade in (1.0, 0.5):
        t = torch.tensor(logits, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
        got = UF.ueo_loss(*t, trade, epsilon=0.0)
        assert got.dtype == torch.float64
        assert abs(got.item() - hand_ueo(logits, weights, trade)) < 1e-12
        # default: the official entropy −Σ p·log(p + 1e-5) (tim-learn/UEO demo.py lines 328-345)
        official = UF.ueo_loss(*t, trade)
        assert abs(official.item() - hand_ueo(logits, weights, trade, 1e-5)) < 1e-12
        assert abs(official.item() - got.item()) > 1e-9  # ~2e-8 here: the two terms partly cancel


def test_uniform_weights_give_information_maximization():
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    p = logits.softmax(-1)
    expected = UF.entropy(p, 1e-5).mean() - UF.entropy(p.mean(0), 1e-5)
    for w in (1.0, 0.2):  # any constant weight, not only 1
        got = UF.ueo_loss(logits, torch.full((7,), w, dtype=torch.float64))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(UF.information_maximization_loss(logits), expected, rtol=0, atol=1e-12)
    exact = UF.entropy(p).mean() - UF.entropy(p.mean(0))
    torch.testing.assert_close(UF.information_maximization_loss(logits, epsilon=0.0), exact, rtol=0, atol=1e-12)


def test_low_weight_samples_dominate_the_marginal():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    bar = UF.weighted_marginal(probs, torch.tensor([0.9, 0.1], dtype=torch.float64))
    torch.testing.assert_close(bar, torch.tensor([0.1, 0.9], dtype=torch.float64))


def test_weights_from_scaled_logits_and_cosines():
    cos = torch.tensor([[0.30, 0.20, 0.10], [0.25, 0.24, 0.23]], dtype=torch.float64)
    scaled = UF.zero_shot_weights(cos, scale=100.0)
    raw = UF.zero_shot_weights(cos)
    assert abs(scaled[0].item() - hand_softmax([30.0, 20.0, 10.0])[0]) < 1e-6
    assert abs(raw[1].item() - hand_softmax([0.25, 0.24, 0.23])[0]) < 1e-6
    # unscaled cosines give near-uniform weights (≈1/K); scaled ones separate the samples
    assert (raw - 1 / 3).abs().max() < 0.04 and scaled[0] - scaled[1] > 0.3


def test_ood_scores_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert abs(UF.ood_score(logits, "max_softmax").item() - hand_softmax([1, 2, 3])[2]) < 1e-6
    assert abs(UF.ood_score(logits, "energy").item() - math.log(math.e + math.e**2 + math.e**3)) < 1e-5
    assert abs(UF.energy_score(logits, 2.0).item() - 2 * math.log(sum(math.exp(x / 2) for x in (1, 2, 3)))) < 1e-5
    official = UF.ood_score(logits, "max_softmax_cosine", logit_scale=10.0).item()
    assert abs(official - hand_softmax([0.1, 0.2, 0.3])[2]) < 1e-6
    with pytest.raises(ValueError, match="needs the model's logit_scale"):
        UF.ood_score(logits, "max_softmax_cosine")
    with pytest.raises(ValueError, match="unknown OOD score"):
        UF.ood_score(logits, "odin")


def test_auroc_of_the_scores_on_a_constructed_case():
    # 3 known (confident to various degrees) and 2 unknown (flat) samples; one unknown outscores one known
    logits = torch.tensor([[9.0, 0, 0], [5.0, 0, 0], [0.5, 0, 0], [0.0, 0, 0], [1.0, 0, 0]])
    known = torch.tensor([True, True, True, False, False])
    for kind in UF.OOD_SCORES:
        scores = UF.ood_score(logits, kind, logit_scale=2.0)
        # pairs (known, unknown) ranked correctly: 3 + 3 + 1 of 6 -> 5/6
        assert abs(auroc(scores, known) - 100 * 5 / 6) < 1e-9


def test_oracle_weights():
    w = UF.oracle_weights(torch.tensor([True, False]))
    torch.testing.assert_close(w, torch.tensor([1.001, 0.001]))


def test_bad_weights_are_refused():
    logits = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="> 0"):
        UF.ueo_loss(logits, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[batch\]"):
        UF.ueo_loss(logits, torch.ones(2))
    with pytest.raises(ValueError, match="batch >= 1"):
        UF.ueo_loss(torch.zeros(0, 2), torch.ones(0))
