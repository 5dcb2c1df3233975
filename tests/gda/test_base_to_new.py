"""Base-to-new α: pseudo-new splits, the pseudo-new rule against a numpy derivation, and no new-class label leak."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.data import class_names
from hf_clipadapt.gda import ALPHAS, GDAConfig, GDAForImageClassification, pseudo_new_splits, select_new_class_alpha

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "gda" / "base_to_new_alpha.py"


def compositional_data(colours=3, objects=4, per_class=6, dim=12, seed=0, noise=0.3):
    """Class (c, o) has features near u_c + v_o, the structure of the testbed's colour-object classes."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(colours, dim, generator=g), torch.randn(objects, dim, generator=g)
    centres = (u[:, None] + v[None]).reshape(colours * objects, dim)
    labels = torch.arange(len(centres)).repeat_interleave(per_class)
    x = F.normalize(centres[labels] + noise * torch.randn(len(labels), dim, generator=g), dim=1).double()
    return x, labels, F.normalize(centres, dim=1).double()


def test_pseudo_new_splits_partition_the_classes_and_follow_the_seed():
    folds = pseudo_new_splits(32, 4, seed=1)
    assert [len(f) for f in folds] == [8, 8, 8, 8]
    assert sorted(torch.cat(folds).tolist()) == list(range(32)), "every base class is pseudo-new exactly once"
    assert all(torch.equal(a, b) for a, b in zip(folds, pseudo_new_splits(32, 4, seed=1)))
    assert not all(torch.equal(a, b) for a, b in zip(folds, pseudo_new_splits(32, 4, seed=2)))
    # Each group keeps >= 2 classes and leaves >= 1 behind: 5 classes allow 2 folds.
    assert sorted(len(f) for f in pseudo_new_splits(5, 4)) == [2, 3]
    assert [len(f) for f in pseudo_new_splits(3, 4)] == [2]
    with pytest.raises(ValueError, match="at least 3 base classes"):
        pseudo_new_splits(2)
    with pytest.raises(ValueError, match="num_folds"):
        pseudo_new_splits(8, 0)


def numpy_official_new_heads(xb, t, k, copies=16):
    """mrflogs/ICLR24 main_base2new.py:85-111 written out: mean of the k nearest features and
    `copies` copies of t; precision = mean over classes of D·inv((k−1)C + tr(C)I), C the
    covariance of the neighbours about t."""
    d = xb.shape[1]
    nn = np.argsort(-(t @ xb.T), axis=1, kind="stable")[:, :k]
    means = np.stack([np.concatenate([xb[i], np.repeat(tj[None], copies, 0)]).mean(0) for i, tj in zip(nn, t)])
    precs = []
    for i, tj in zip(nn, t):
        c = (xb[i] - tj).T @ (xb[i] - tj) / (k - 1)
        precs.append(d * np.linalg.inv((k - 1) * c + np.trace(c) * np.eye(d)))
    return means, np.mean(precs, axis=0)


def numpy_pseudo_new_scores(x, y, text, k, folds, logit_scale, alphas, head="knn_mean"):
    """The rule written out directly: per fold, heads for the held-out classes from the kept
    classes' features (knn_mean: KS precision of the kept classes and k-NN means; official:
    `numpy_official_new_heads`), ensemble accuracy of the held-out features among themselves."""
    correct, total = np.zeros(len(alphas)), 0
    for held in folds:
        kept = np.setdiff1d(np.arange(len(text)), held)
        xb = x[np.isin(y, kept)]
        yb = np.searchsorted(kept, y[np.isin(y, kept)])
        n, d = xb.shape
        t = text[held]
        if head == "official":
            means, prec = numpy_official_new_heads(xb, t, min(k, n))
        else:
            mus = np.stack([xb[yb == c].mean(0) for c in range(len(kept))])
            s = np.cov((xb - mus[yb]).T)
            prec = d * np.linalg.inv((n - 1) * s + np.trace(s) * np.eye(d))
            nn = np.argsort(-(t @ xb.T), axis=1)[:, : min(k, n)]
            means = xb[nn].mean(1)
        w, b = means @ prec, np.log(1 / len(held)) - 0.5 * np.einsum("kd,de,ke->k", means, prec, means)
        xn, yn = x[np.isin(y, held)], np.searchsorted(held, y[np.isin(y, held)])
        for i, a in enumerate(alphas):
            correct[i] += ((logit_scale * xn @ t.T + a * (xn @ w.T + b)).argmax(1) == yn).sum()
        total += len(yn)
    return 100 * correct / total


@pytest.mark.parametrize("head", ["official", "knn_mean"])
def test_pseudo_new_rule_matches_a_numpy_derivation(head):
    """The pseudo-new folds build their heads the way the new classes' heads are built (by default
    the official ones, main_base2new.py:85-111)."""
    x, y, text = compositional_data()
    kwargs = {} if head == "official" else {"head": head}
    alpha, scores = select_new_class_alpha(x, y, text, k=10, num_folds=3, seed=4, logit_scale=5.0, **kwargs)
    folds = [f.numpy() for f in pseudo_new_splits(12, 3, seed=4)]
    ref = numpy_pseudo_new_scores(x.numpy(), y.numpy(), text.numpy(), 10, folds, 5.0, sorted(ALPHAS), head)
    np.testing.assert_allclose(list(scores.values()), ref, atol=1e-9)
    assert list(scores) == sorted(ALPHAS)
    assert alpha == min(a for a, s in scores.items() if s == max(scores.values())), "ties keep the smaller α"


def test_pseudo_new_rule_keeps_zero_shot_when_the_knn_heads_mislead():
    """Text embeddings are the true class centres (zero-shot is right); with no compositional
    structure the k-NN heads of a held-out class are other classes' means and only add errors."""
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(12, 16, generator=g), dim=1).double()
    y = torch.arange(12).repeat_interleave(8)
    x = F.normalize(centres[y] + 0.15 * torch.randn(len(y), 16, generator=g, dtype=torch.float64), dim=1)
    alpha, scores = select_new_class_alpha(x, y, centres, k=8, logit_scale=10.0, head="knn_mean")
    assert alpha == min(ALPHAS) and scores[alpha] > 95.0
    assert scores[100.0] < scores[alpha] - 5.0, scores


def test_pseudo_new_rule_rejects_bad_input():
    x, y, text = compositional_data()
    with pytest.raises(ValueError, match="alphas is empty"):
        select_new_class_alpha(x, y, text, alphas=[])
    with pytest.raises(ValueError, match="have no samples"):
        select_new_class_alpha(x[y != 3], y[y != 3], text)
    with pytest.raises(ValueError, match="labels must lie in"):
        select_new_class_alpha(x, y, text[:5])


def test_new_classes_head_options(backbone, dataset, tmp_path):
    """ "reuse" keeps the base α (the paper); "pseudo_new" is the functional rule on the
    normalised base features, with its scores and the rule recorded and saved."""
    from hf_clipadapt.gda import new_class_classifier

    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    model.fit(dataset, shots=2, views=2)
    feats = backbone.encode_images(backbone.preprocess(list(dataset["image"])))
    labels = torch.tensor(dataset["label"])
    reuse = model.new_classes_head(["yellow", "purple"], feats, labels, k=4)
    assert reuse.config.alpha == model.config.alpha and reuse.config.new_class_alpha_rule == "reuse"
    head = model.new_classes_head(["yellow", "purple"], feats, labels, k=4, alpha_rule="pseudo_new", seed=5)
    x = F.normalize(feats.double(), dim=-1)
    alpha, scores = select_new_class_alpha(
        x, labels, model.text_weights.double(), k=4, seed=5, logit_scale=model.config.logit_scale
    )
    assert head.config.alpha == alpha and head.config.alpha_scores == {str(a): s for a, s in scores.items()}
    w, _ = new_class_classifier(x, labels, head.text_weights.double(), k=4)
    torch.testing.assert_close(head.weight, reuse.weight)
    torch.testing.assert_close(head.weight, w.float(), rtol=1e-4, atol=1e-3)
    head.save_pretrained(tmp_path / "new")
    config = GDAConfig.from_pretrained(tmp_path / "new")
    assert (config.new_class_alpha_rule, config.alpha) == ("pseudo_new", alpha)
    with pytest.raises(ValueError, match="alpha_rule must be one of"):
        model.new_classes_head(["yellow"], feats, labels, alpha_rule="oracle")
    only_gda = GDAForImageClassification.from_clip(backbone, num_labels=3).fit(dataset, shots=2, views=2)
    with pytest.raises(ValueError, match="needs its base class names"):
        only_gda.new_classes_head(["yellow"], feats, labels, alpha_rule="pseudo_new")


# --------------------------------------------------------------------------- no label leak, end to end


def _benchmark():
    spec = importlib.util.spec_from_file_location("base_to_new_alpha", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_suite():
    """The testbed's base_to_new suite on 4 known objects of random sprites: 8 base, 8 new classes."""
    from hf_clipadapt.testbed import KNOWN_OBJECTS, SceneWorld, load_suite

    rng = np.random.default_rng(0)
    sprites = {o: (rng.random((3, 28, 28)) > 0.5).astype(np.uint8) * 255 for o in KNOWN_OBJECTS[:4]}
    return load_suite("base_to_new", seed=0, n_train_per_class=4, n_test_per_class=2, world=SceneWorld(sprites))


def test_benchmark_alpha_never_reads_new_class_labels(backbone, tiny_suite):
    """Scrambling the new test labels (or swapping the new test images) leaves every chosen α
    and the pseudo-new scores unchanged; scrambling the base training labels changes the scores."""
    bench = _benchmark()
    encode = bench.make_encoder(backbone, cache_dir=None)
    run = lambda suite: bench.run_one(backbone, suite, shots=2, seed=1, views=2, encode=encode, cache_dir=None, k=3)  # noqa: E731
    chosen = ("base_alpha", "new_alpha", "pseudo_new_scores")
    ref = run(tiny_suite)
    perm = np.random.default_rng(1).permutation(len(tiny_suite["test_new"]))
    scrambled = tiny_suite.copy()
    scrambled["test_new"] = tiny_suite["test_new"].map(
        lambda r, i: {"label": tiny_suite["test_new"][int(perm[i])]["label"]}, with_indices=True
    )
    assert scrambled["test_new"]["label"] != tiny_suite["test_new"]["label"]
    assert {k: run(scrambled)[k] for k in chosen} == {k: ref[k] for k in chosen}
    swapped = tiny_suite.copy()
    swapped["test_new"] = tiny_suite["test_new"].shuffle(seed=3).select(range(4))
    assert {k: run(swapped)[k] for k in chosen} == {k: ref[k] for k in chosen}
    base_perm = np.random.default_rng(2).permutation(len(tiny_suite["train"]))
    shuffled_base = tiny_suite.copy()
    shuffled_base["train"] = tiny_suite["train"].map(
        lambda r, i: {"label": tiny_suite["train"][int(base_perm[i])]["label"]}, with_indices=True
    )
    assert run(shuffled_base)["pseudo_new_scores"] != ref["pseudo_new_scores"], "the rule must depend on base data"
