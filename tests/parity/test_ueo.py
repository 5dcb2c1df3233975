"""Parity: UEO's loss, weights and AUROC against float64 re-derivations of the official code.

tim-learn/UEO, `demo.py`, read line by line:
- `loss_entropy` / `loss_entropy_wei` (lines 328-345): −Σ_k p·log(p + 1e-5), averaged over
  the batch, or weighted by w and divided by Σw.
- the training loss (lines 470-485): p = softmax(100·cos); UEO: weighted entropy −
  trade·H(p̄), p̄ = Σ_i p_i/w_i / Σ_i 1/w_i; `--noweight`: mean entropy − trade·H(mean p);
  `--oracle`: w = 1[known] + 1e-3.
- the weights (lines 425, 453-454, with `load_features` 312-326): the max softmax of the
  initial model's *unscaled* cosine similarities on the training images.
- `get_score` (lines 291-306) on unscaled cosines: global accuracy and the mean per-class
  accuracy (classes with known images) of the known images; AUROC of the max softmax with
  known images as positives (sklearn `roc_curve` + `auc`; re-derived here as the pair count
  P(known > unknown) + ½·P(tie), which is the same area).
"""

import numpy as np
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_dataset, tiny_image_processor
from hf_clipadapt.ueo import UEOForImageClassification, information_maximization_loss, oracle_weights, ueo_loss
from hf_clipadapt.ueo.evaluation import open_set_metrics
from hf_clipadapt.ueo.training import CheckedImages, zero_shot_pass

EPS = 1e-5


def official_entropy(p):
    return -(p * np.log(p + EPS)).sum(-1)


def official_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def official_loss(cos, weights, trade, noweight=False):
    p = official_softmax(100.0 * cos)
    if noweight:
        return official_entropy(p).mean() - trade * official_entropy(p.mean(0))
    cond = (official_entropy(p) * weights).sum() / weights.sum()
    marginal = (p / weights[:, None]).sum(0) / (1.0 / weights).sum()
    return cond - trade * official_entropy(marginal)


def official_score(cos, labels, num_known):
    probs = official_softmax(cos)
    scores, preds = probs.max(1), probs.argmax(1)
    known = labels < num_known
    acc = [(preds[known & (labels == c)] == c).mean() for c in range(num_known) if (known & (labels == c)).any()]
    pos, neg = scores[known], scores[~known]
    area = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    return (preds[known] == labels[known]).mean(), float(np.mean(acc)), area


def random_cosines(n, k, seed):
    rng = np.random.default_rng(seed)
    return np.clip(0.25 + 0.05 * rng.standard_normal((n, k)), -1, 1)


def test_loss_matches_the_official_loss():
    cos = random_cosines(12, 5, 0)
    w = official_softmax(cos).max(1)  # the official weights: nearly uniform
    logits = torch.from_numpy(100.0 * cos)
    for trade in (1.0, 0.3):
        got = ueo_loss(logits, torch.from_numpy(w), trade)
        assert abs(got.item() - official_loss(cos, w, trade)) < 1e-12
        got = information_maximization_loss(logits, trade)
        assert abs(got.item() - official_loss(cos, w, trade, noweight=True)) < 1e-12
    known = np.array([True, False] * 6)
    oracle = oracle_weights(torch.from_numpy(known)).double()
    np.testing.assert_allclose(oracle.numpy(), known + 1e-3, rtol=1e-7)  # float32 weights, as the official ones
    got = ueo_loss(logits, oracle, 1.0)
    assert abs(got.item() - official_loss(cos, oracle.numpy(), 1.0)) < 1e-12


def test_weights_are_the_official_max_softmax_of_unscaled_cosines():
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    model = UEOForImageClassification.from_clip(clip, ["red", "green", "blue"])
    data = tiny_image_dataset(3, 2, seed=0).remove_columns("label")
    weights = zero_shot_pass(model, CheckedImages(data))
    pv = model.backbone.preprocess([row["image"] for row in data])
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pv).double()
        txt = model.class_text_features().double()
    cos = (img / img.norm(dim=-1, keepdim=True) @ (txt / txt.norm(dim=-1, keepdim=True)).T).numpy()
    np.testing.assert_allclose(weights.double().numpy(), official_softmax(cos).max(1), rtol=1e-5)


def test_open_set_scores_match_the_official_get_score():
    cos = random_cosines(40, 4, 1)
    labels = np.random.default_rng(2).integers(0, 6, 40)  # classes 4 and 5: unknown
    labels[:4] = [0, 1, 2, 3]
    ours = labels.copy()
    ours[labels >= 4] = -1
    gacc, pacc, area = official_score(cos, labels, 4)
    for scale in (100.0, 18.0):
        m = open_set_metrics(torch.from_numpy(scale * cos), torch.from_numpy(ours), logit_scale=scale)
        assert abs(m["accuracy"] - 100 * gacc) < 1e-9 and abs(m["per_class_accuracy"] - 100 * pacc) < 1e-9
        assert abs(m["auroc"] - 100 * area) < 1e-9
    assert abs(m["auroc_scaled"] - m["auroc"]) > 1.0  # the scaled ranking is another number here
