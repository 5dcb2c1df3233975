"""Parity: GDA against an independent float64 reference of the official code (mrflogs/ICLR24).

Each reference below is re-derived, in numpy float64, from reading the official scripts:

* few-shot head, main_few_shots.py lines 55-64: class means; the KS precision
  D·pinv((N−1)·S + tr(S)·I), S = cov of the class-centred features (torch's `.cov()`,
  N − 1 denominator); W = μP, b = log(1/K) − ½ μᵀPμ;
* α search, main_few_shots.py lines 67-79: grid {1e-4, ..., 100}, logits
  100·x·T + α·(x·W + b), a strict ">" from (α = 0.1, accuracy 0);
* base-to-new base head, main_base2new.py lines 55-61: the mean over classes of each
  class's `.cov()`, pseudo-inverted, no shrinkage (torch.linalg.pinv on float32, whose
  default cut-off is D·ε(float32)·σ_max);
* new-class heads, main_base2new.py lines 85-113: per new class t_j, the k = 64 features
  with the largest t_j·x; mean of those k rows and 16 rows of t_j; precision the mean
  over classes of 512·pinv((k−1)·C + tr(C)·I), C = (V − t_j)ᵀ(V − t_j)/(k − 1) (512 is
  ViT-B/16's D; written D here); logits 100·x·T_new + α_base·(x·W_new + b_new).

Compared with the functional core (float64, to ~1e-10) and with the model's forward
(float32 buffers, `assert_close_scaled`).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.gda import (
    ALPHAS,
    GDAConfig,
    GDAForImageClassification,
    fit_gda,
    new_class_classifier,
    select_alpha,
)
from hf_clipadapt.testing_utils import assert_close_scaled

GRID = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]  # main_few_shots.py:70, main_base2new.py:67
EPS32 = np.finfo(np.float32).eps


def data(num_classes=4, per_class=20, dim=12, seed=0, spread=0.6):
    g = np.random.default_rng(seed)
    centres = g.normal(size=(num_classes, dim))
    y = np.repeat(np.arange(num_classes), per_class)
    x = centres[y] + spread * g.normal(size=(len(y), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # main_few_shots.py:49
    t = centres + 0.8 * g.normal(size=centres.shape)
    t /= np.linalg.norm(t, axis=1, keepdims=True)  # utils.py:29-31
    return x, y, t


def official_few_shot_head(x, y, k):
    mus = np.stack([x[y == i].mean(0) for i in range(k)])
    centred = np.concatenate([x[y == i] - mus[i] for i in range(k)])
    s = np.cov(centred.T)  # torch .cov(): rows are variables, N − 1 denominator
    n, d = centred.shape
    prec = d * np.linalg.pinv((n - 1) * s + np.trace(s) * np.eye(d))
    return mus @ prec, np.log(np.full(k, 1.0 / k)) - np.einsum("nd,dc,nc->n", mus, prec, mus) / 2


def official_base_to_new_base_head(x, y, k):
    mus = np.stack([x[y == i].mean(0) for i in range(k)])
    cov = np.stack([np.cov(x[y == i].T) for i in range(k)]).mean(0)
    prec = np.linalg.pinv(cov, rcond=max(cov.shape) * EPS32)
    return mus @ prec, np.log(np.full(k, 1.0 / k)) - np.einsum("nd,dc,nc->n", mus, prec, mus) / 2


def official_new_heads(vecs, t_new, k=64, copies=16):
    d = vecs.shape[1]
    mu, precs = [], []
    for w in t_new:
        top = np.argsort(-(w @ vecs.T), kind="stable")[:k]
        mu.append(np.concatenate([vecs[top], np.repeat(w[None], copies, 0)]).mean(0))
        c = (vecs[top] - w).T @ (vecs[top] - w) / (k - 1)
        precs.append(d * np.linalg.pinv((k - 1) * c + np.trace(c) * np.eye(d)))
    mu, prec = np.stack(mu), np.stack(precs).mean(0)
    return mu @ prec, np.log(np.full(len(t_new), 1.0 / len(t_new))) - np.einsum("nd,dc,nc->n", mu, prec, mu) / 2


def official_alpha_search(val_x, val_y, t, w, b):
    best_acc, best_alpha = 0, 0.1
    for alpha in GRID:
        acc = 100 * ((100.0 * val_x @ t.T + alpha * (val_x @ w.T + b)).argmax(1) == val_y).mean()
        if acc > best_acc:
            best_acc, best_alpha = acc, alpha
    return best_alpha


def model_with(weight, bias, text, alpha):
    k, d = text.shape
    cfg = GDAConfig(
        embed_dim=d,
        id2label={i: f"c{i}" for i in range(k)},
        label2id={f"c{i}": i for i in range(k)},
        logit_scale=100.0,
        alpha=alpha,
        is_fitted=True,
    )
    model = GDAForImageClassification(cfg)
    for name, value in (("weight", weight), ("bias", bias), ("text_weights", text)):
        getattr(model, name).copy_(torch.as_tensor(value))
    return model.eval()


def test_few_shot_head_alpha_search_and_forward_match_the_official_code():
    x, y, t = data()
    vx, vy, _ = data(seed=1)
    w_ref, b_ref = official_few_shot_head(x, y, 4)
    w, b = fit_gda(torch.from_numpy(x), torch.from_numpy(y), 4)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-10, atol=1e-10 * np.abs(w_ref).max())
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-10, atol=1e-10 * np.abs(b_ref).max())
    assert list(ALPHAS) == GRID
    alpha, _ = select_alpha(torch.from_numpy(vx), torch.from_numpy(vy), torch.from_numpy(t), w, b)
    assert alpha == official_alpha_search(vx, vy, t, w_ref, b_ref)
    logits_ref = 100.0 * vx @ t.T + alpha * (vx @ w_ref.T + b_ref)
    out = model_with(w, b, t, alpha)(image_features=torch.from_numpy(vx).float()).logits
    assert_close_scaled(out, logits_ref, rtol=1e-5)


@pytest.mark.parametrize("per_class,dim", [(20, 12), (3, 10)])  # full rank; rank 6 < D (the null space is cut)
def test_base_to_new_base_head_matches_the_official_code(per_class, dim):
    x, y, _ = data(num_classes=3, per_class=per_class, dim=dim)
    w_ref, b_ref = official_base_to_new_base_head(x, y, 3)
    w, b = fit_gda(torch.from_numpy(x), torch.from_numpy(y), 3, covariance="class_mean_pinv")
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=0, atol=1e-8 * np.abs(w_ref).max())
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=0, atol=1e-8 * np.abs(b_ref).max())


def test_new_class_heads_and_their_logits_match_the_official_code():
    x, y, t = data(num_classes=6, per_class=30, dim=12)
    base, new = np.isin(y, [0, 1, 2]), np.isin(y, [3, 4, 5])
    vecs, t_new = x[base], t[3:]
    w_ref, b_ref = official_new_heads(vecs, t_new)
    w, b = new_class_classifier(torch.from_numpy(vecs), None, torch.from_numpy(t_new))  # defaults: k = 64, 16 copies
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=0, atol=1e-10 * np.abs(w_ref).max())
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=0, atol=1e-10 * np.abs(b_ref).max())
    # Base α reused (main_base2new.py:113): the model's forward on the new classes' test features.
    bw, bb = official_base_to_new_base_head(vecs, y[base], 3)
    alpha = official_alpha_search(x[base], y[base], t[:3], bw, bb)
    xn = x[new]
    logits_ref = 100.0 * xn @ t_new.T + alpha * (xn @ w_ref.T + b_ref)
    out = model_with(w, b, t_new, alpha)(image_features=torch.from_numpy(xn).float()).logits
    assert_close_scaled(out, logits_ref, rtol=1e-5)


def test_model_new_classes_head_builds_the_official_heads():
    """`new_classes_head` (defaults) on normalised features = the official heads on them."""
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

    backbone = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    base = GDAForImageClassification.from_clip(backbone, ["red", "green"], logit_scale=100.0, alpha=10.0)
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(80, base.config.embed_dim, generator=g, dtype=torch.float64), dim=1)
    head = base.new_classes_head(["blue", "yellow"], feats)
    w_ref, b_ref = official_new_heads(feats.numpy(), head.text_weights.double().numpy())
    assert_close_scaled(head.weight, w_ref, rtol=1e-5)
    assert_close_scaled(head.bias, b_ref, rtol=1e-5)
    assert head.config.alpha == 10.0
