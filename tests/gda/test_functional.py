"""GDA's functional core against independent derivations (numpy/scipy, float64)."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from scipy.stats import multivariate_normal

from hf_clipadapt.gda import (
    ALPHAS,
    GDADegenerateCovarianceWarning,
    GDAStatistics,
    ensemble_logits,
    fit_gda,
    fit_gda_em,
    gda_logits,
    new_class_classifier,
    select_alpha,
)
from hf_clipadapt.testing_utils import assert_close_scaled


def make_data(n_per_class=12, num_classes=4, dim=6, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 2
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    return F.normalize(feats, dim=1).double(), labels


def numpy_gda(x: np.ndarray, y: np.ndarray, k: int):
    """The paper's formulas, written out directly: means, np.cov of the centred
    features, D·inv((N−1)S + tr(S)I), w = Pμ, b = log(1/K) − ½μᵀPμ."""
    n, d = x.shape
    mus = np.stack([x[y == c].mean(0) for c in range(k)])
    centred = x - mus[y]
    s = np.cov(centred.T)
    prec = d * np.linalg.inv((n - 1) * s + np.trace(s) * np.eye(d))
    w = mus @ prec
    b = np.log(1.0 / k) - 0.5 * np.einsum("kd,de,ke->k", mus, prec, mus)
    return w, b, mus, prec


def test_closed_form_matches_numpy_derivation():
    x, y = make_data()
    w, b = fit_gda(x, y, 4)
    w_ref, b_ref, _, _ = numpy_gda(x.numpy(), y.numpy(), 4)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-9, atol=1e-9)


def test_logits_are_the_gaussian_posterior():
    """softmax(x·Wᵀ + b) equals Bayes' rule with N(μ_k, P⁻¹) densities and a uniform prior (scipy)."""
    x, y = make_data(num_classes=3, dim=4)
    w, b = fit_gda(x, y, 3)
    _, _, mus, prec = numpy_gda(x.numpy(), y.numpy(), 3)
    cov = np.linalg.inv(prec)
    log_lik = np.stack([multivariate_normal(mus[c], cov).logpdf(x.numpy()) for c in range(3)], axis=1)
    np.testing.assert_allclose(
        torch.softmax(gda_logits(x, w, b), 1).numpy(), softmax(log_lik + np.log(1 / 3), axis=1), atol=1e-9
    )


def test_float32_features_give_float32_outputs_close_to_float64():
    x, y = make_data()
    w64, b64 = fit_gda(x, y, 4)
    w32, b32 = fit_gda(x.float(), y, 4)
    assert w32.dtype == b32.dtype == torch.float32
    assert_close_scaled(w32, w64, rtol=1e-5)  # the float32 input's rounding, amplified by Σ⁻¹: relative to max|w|
    assert_close_scaled(b32, b64, rtol=1e-5)


def test_permutation_invariance():
    x, y = make_data()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    w, b = fit_gda(x, y, 4)
    wp, bp = fit_gda(x[perm], y[perm], 4)
    torch.testing.assert_close(w, wp, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(b, bp, rtol=1e-10, atol=1e-10)


def test_streaming_equals_batch_in_any_chunking_and_merge():
    x, y = make_data(n_per_class=20)
    w, b = fit_gda(x, y, 4)
    stats = GDAStatistics(4, x.shape[1])
    for chunk in torch.arange(len(y)).split(7):
        stats.update(x[chunk], y[chunk])
    ws, bs = stats.solve(out_dtype=torch.float64)
    torch.testing.assert_close(ws, w, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(bs, b, rtol=1e-9, atol=1e-9)
    a, c = GDAStatistics(4, x.shape[1]), GDAStatistics(4, x.shape[1])
    a.update(x[::2], y[::2]), c.update(x[1::2], y[1::2])
    wm, bm = a.merge(c).solve(out_dtype=torch.float64)
    torch.testing.assert_close(wm, w, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(bm, b, rtol=1e-9, atol=1e-9)


def test_one_shot_without_views_warns_and_falls_back_to_nearest_mean():
    x, y = make_data(n_per_class=1, num_classes=5)
    with pytest.warns(GDADegenerateCovarianceWarning, match="within-class scatter is zero"):
        w, b = fit_gda(x, y, 5)
    assert torch.isfinite(w).all() and torch.isfinite(b).all()
    torch.testing.assert_close(w, x)  # Σ = I: w_k = μ_k
    torch.testing.assert_close(b, math.log(1 / 5) - 0.5 * (x * x).sum(1))
    with pytest.warns(GDADegenerateCovarianceWarning):
        ws, _ = GDAStatistics(5, x.shape[1]).update(x, y).solve(out_dtype=torch.float64)
    torch.testing.assert_close(ws, w)


def test_one_shot_with_views_has_scatter_and_no_warning():
    x, y = make_data(n_per_class=1, num_classes=5)
    views = F.normalize(x.repeat(4, 1) + 0.05 * torch.randn(20, x.shape[1], dtype=x.dtype), dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w, b = fit_gda(views, y.repeat(4), 5)
    assert (gda_logits(x, w, b).argmax(1) == y).all()


def test_ensemble_logits_formula_and_text_free_case():
    x, y = make_data()
    w, b = fit_gda(x, y, 4)
    t = F.normalize(torch.randn(4, x.shape[1], dtype=x.dtype), dim=1)
    out = ensemble_logits(x, t, w, b, alpha=0.3, logit_scale=50.0)
    torch.testing.assert_close(out, 50.0 * x @ t.T + 0.3 * (x @ w.T + b))
    torch.testing.assert_close(ensemble_logits(x, None, w, b, alpha=0.3), x @ w.T + b)
    with pytest.raises(ValueError, match="differ in shape"):
        ensemble_logits(x, t[:3], w, b, alpha=1.0)


def test_select_alpha_prefers_smaller_on_ties():
    x, y = make_data(spread=0.1)
    w, b = fit_gda(x, y, 4)
    # Text classifier = the true class means: every alpha is perfect on this data -> the smallest wins.
    t = F.normalize(torch.stack([x[y == c].mean(0) for c in range(4)]), dim=1)
    alpha, scores = select_alpha(x, y, t, w, b)
    assert set(scores.values()) == {100.0} and alpha == min(ALPHAS)
    # An adversarial text classifier (-T): only a large alpha lets GDA win. Unordered input is fine.
    alpha, scores = select_alpha(x, y, -t, w, b, alphas=[100.0, 1e-4])
    assert alpha == 100.0 and scores[100.0] > scores[1e-4]


def test_new_class_classifier_uses_k_nearest_base_features():
    x, y = make_data(n_per_class=30, num_classes=4, dim=8, spread=0.3)
    new_text = F.normalize(torch.randn(2, 8, dtype=x.dtype), dim=1)
    k = 10
    w, b = new_class_classifier(x, y, new_text, k=k, head="knn_mean")
    # Independent: means of the k most cosine-similar base features, base precision from numpy.
    sims = new_text.numpy() @ x.numpy().T
    nn_means = np.stack([x.numpy()[np.argsort(-s)[:k]].mean(0) for s in sims])
    _, _, _, prec = numpy_gda(x.numpy(), y.numpy(), 4)
    np.testing.assert_allclose(w.numpy(), nn_means @ prec, atol=1e-9)
    np.testing.assert_allclose(
        b.numpy(), np.log(1 / 2) - 0.5 * np.einsum("kd,de,ke->k", nn_means, prec, nn_means), atol=1e-9
    )
    with pytest.raises(ValueError, match="exceeds"):
        new_class_classifier(x, y, new_text, k=len(y) + 1)


def numpy_official_new_heads(x, t, k, copies=16):
    """mrflogs/ICLR24 main_base2new.py:85-111, written out with numpy: for each new class, the
    k features with the largest x·t; mean = average of those k rows and `copies` rows of t;
    precision = average over classes of D·inv((k−1)C + tr(C)I), C = (V − t)ᵀ(V − t)/(k − 1)."""
    d = x.shape[1]
    means, precs = [], []
    for tj in t:
        v = x[np.argsort(-(x @ tj), kind="stable")[:k]]
        means.append(np.concatenate([v, np.tile(tj, (copies, 1))]).mean(0))
        c = (v - tj).T @ (v - tj) / (k - 1)
        precs.append(d * np.linalg.inv((k - 1) * c + np.trace(c) * np.eye(d)))
    means, prec = np.stack(means), np.mean(precs, axis=0)
    return means @ prec, np.log(1 / len(t)) - 0.5 * np.einsum("kd,de,ke->k", means, prec, means)


def test_new_class_classifier_default_is_the_official_head():
    """Mean with 16 text copies, precision of the neighbours about the text averaged over new
    classes (the earlier head used neither and took the base classes' covariance)."""
    x, y = make_data(n_per_class=30, num_classes=4, dim=8, spread=0.3)
    new_text = F.normalize(torch.randn(3, 8, dtype=x.dtype), dim=1)
    w, b = new_class_classifier(x, y, new_text, k=10)
    w_ref, b_ref = numpy_official_new_heads(x.numpy(), new_text.numpy(), 10)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-10, atol=1e-10)
    # The official head reads no base labels; text_copies=0 leaves the plain k-NN mean.
    w0, _ = new_class_classifier(x, None, new_text, k=10, text_copies=0)
    np.testing.assert_allclose(
        w0.numpy(), numpy_official_new_heads(x.numpy(), new_text.numpy(), 10, copies=0)[0], atol=1e-10
    )
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        new_class_classifier(x, None, new_text, k=1)
    with pytest.raises(ValueError, match="pass base_labels"):
        new_class_classifier(x, None, new_text, k=4, head="knn_mean")
    with pytest.raises(ValueError, match="head must be one of"):
        new_class_classifier(x, y, new_text, head="nearest")


def numpy_class_mean_pinv(x, y, k):
    """mrflogs/ICLR24 main_base2new.py:55-61: per-class np.cov averaged over classes, pinv (no
    shrinkage); float32's cut-off, as torch.linalg.pinv uses on the official float32 input."""
    mus = np.stack([x[y == c].mean(0) for c in range(k)])
    cov = np.mean([np.cov(x[y == c].T) for c in range(k)], axis=0)
    prec = np.linalg.pinv(cov, rcond=x.shape[1] * np.finfo(np.float32).eps, hermitian=True)
    return mus @ prec, np.log(1 / k) - 0.5 * np.einsum("kd,de,ke->k", mus, prec, mus)


def test_class_mean_pinv_is_the_official_base_to_new_base_head():
    x, y = make_data(n_per_class=12, num_classes=4, dim=6)
    w, b = fit_gda(x, y, 4, covariance="class_mean_pinv")
    w_ref, b_ref = numpy_class_mean_pinv(x.numpy(), y.numpy(), 4)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-8, atol=1e-8)
    assert not np.allclose(w.numpy(), fit_gda(x, y, 4)[0].numpy(), atol=1e-3), "differs from the KS head"
    # Equal class counts: the streaming statistics give the same head.
    w_s, b_s = GDAStatistics(4, 6).update(x, y).solve(out_dtype=torch.float64, covariance="class_mean_pinv")
    np.testing.assert_allclose(w_s.numpy(), w_ref, rtol=1e-8, atol=1e-8)
    # Unequal counts: exact in fit_gda, refused by the streaming statistics (they keep no per-class moments).
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[:5] = False
    w_u, _ = fit_gda(x[keep], y[keep], 4, covariance="class_mean_pinv")
    np.testing.assert_allclose(
        w_u.numpy(), numpy_class_mean_pinv(x[keep].numpy(), y[keep].numpy(), 4)[0], rtol=1e-8, atol=1e-8
    )
    with pytest.raises(ValueError, match="same number"):
        GDAStatistics(4, 6).update(x[keep], y[keep]).solve(covariance="class_mean_pinv")
    with pytest.raises(ValueError, match="single sample"):
        fit_gda(x[::12], y[::12], 4, covariance="class_mean_pinv")
    with pytest.raises(ValueError, match="covariance must be one of"):
        fit_gda(x, y, 4, covariance="ledoit_wolf")


def test_class_mean_pinv_drops_the_null_space_of_a_rank_deficient_covariance():
    """More dimensions than samples: the covariance is singular; the pseudo-inverse (float32's
    cut-off) stays finite and matches numpy's pinv."""
    x, y = make_data(n_per_class=3, num_classes=3, dim=10)
    w, b = fit_gda(x, y, 3, covariance="class_mean_pinv")
    w_ref, b_ref = numpy_class_mean_pinv(x.numpy(), y.numpy(), 3)
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-7, atol=1e-7)


def test_select_alpha_returns_the_official_start_when_nothing_is_right():
    """main_few_shots.py:68-76 starts at α = 0.1 with accuracy 0 and moves only on a strict gain."""
    x, y = make_data(spread=0.1)
    w, b = fit_gda(x, y, 4)
    t = F.normalize(torch.stack([x[y == c].mean(0) for c in range(4)]), dim=1)
    wrong = (y + 1) % 4  # every α classifies (almost) all right, so every α scores 0 on these labels
    alpha, scores = select_alpha(x, wrong, t, w, b, alphas=[1e-4, 1.0])
    assert set(scores.values()) == {0.0} and alpha == 0.1


def test_em_improves_on_zero_shot_on_separable_data():
    g = torch.Generator().manual_seed(0)
    k, d = 4, 16
    centres = F.normalize(torch.randn(k, d, generator=g), dim=1)
    y = torch.arange(k).repeat_interleave(100)
    x = F.normalize(centres[y] + 0.08 * torch.randn(len(y), d, generator=g), dim=1)
    # A poor zero-shot classifier: the true directions blurred with strong noise.
    text = F.normalize(centres + 0.9 * torch.randn(k, d, generator=g), dim=1)
    zero_shot_acc = (x @ text.T).argmax(1).eq(y).double().mean().item()
    # The KS precision carries a D/(N−1) factor, so GDA logits are small next to
    # 100·x·Tᵀ and α must be large for the mixture to move (the paper's grid goes to 100).
    w, b, info = fit_gda_em(x, text, alpha=100.0, logit_scale=100.0, max_iter=30)
    em_acc = ensemble_logits(x, text, w, b, 100.0).argmax(1).eq(y).double().mean().item()
    assert zero_shot_acc < 0.8
    assert em_acc > zero_shot_acc + 0.15
    assert info["log_likelihood"][-1] > info["log_likelihood"][0]
    assert info["converged"] and info["iterations"] < 30
    assert all(np.isfinite(info["log_likelihood"]))


def test_em_respects_max_iter():
    x, y = make_data()
    t = F.normalize(torch.randn(4, x.shape[1], dtype=x.dtype), dim=1)
    _, _, info = fit_gda_em(x, t, max_iter=2, tol=0.0)
    assert info["iterations"] == 2 and not info["converged"]


# ------------------------------------------------------------------ bad input


def test_empty_class_is_named():
    x, y = make_data(num_classes=3)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] have no samples"):
        fit_gda(x, y, 4)


def test_labels_out_of_range():
    x, y = make_data(num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*\[2\]"):
        fit_gda(x, y, 2)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        fit_gda(x, torch.where(y == 0, -1, y), 3)


def test_nan_features_are_rejected():
    x, y = make_data()
    x[5, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 row\(s\) \(first: \[5\]\)"):
        fit_gda(x, y, 4)
    stats = GDAStatistics(4, x.shape[1])
    with pytest.raises(ValueError, match="NaN"):
        stats.update(x, y)
    assert stats.num_samples == 0  # a rejected batch leaves the statistics untouched


def test_shape_and_type_errors():
    x, y = make_data()
    with pytest.raises(ValueError, match="one entry per feature row"):
        fit_gda(x, y[:-1], 4)
    with pytest.raises(TypeError, match="integer class ids"):
        fit_gda(x, y.double(), 4)
    with pytest.raises(ValueError, match="2-D"):
        fit_gda(x[0], y, 4)
    with pytest.raises(ValueError, match="created for dim"):
        GDAStatistics(4, 3).update(x, y)
    with pytest.raises(ValueError, match="cannot merge"):
        GDAStatistics(4, 6).merge(GDAStatistics(5, 6))
