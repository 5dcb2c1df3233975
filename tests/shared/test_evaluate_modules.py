"""The metrics as `evaluate` modules: offline loading, direct instantiation, agreement
with the torch functions, and the torch functions against independent computations."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from hf_clipadapt import metrics
from hf_clipadapt.evaluate_modules import NAMES


def _data(seed=0, n=200, classes=5):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, classes, n)
    preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, classes, n))  # 60% forced right
    return preds, refs, rng


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # "unknown" predictions
def test_open_set_scores_match_sklearn():
    preds, refs, rng = _data(1)
    unknown = 4  # class 4 plays the unknown classes
    scores = rng.random(len(refs)) + 0.5 * (refs != unknown)  # known samples score higher on average
    out = metrics.open_set_scores(preds, refs, scores, unknown_index=unknown)
    known = refs != unknown
    assert out["known"] == pytest.approx(100 * balanced_accuracy_score(refs[known], preds[known]), rel=1e-12)
    assert out["auroc"] == pytest.approx(100 * roc_auc_score(known, scores), rel=1e-12)
    k, a = out["known"], out["auroc"]
    assert out["H"] == pytest.approx(2 * k * a / (k + a), rel=1e-12)


def test_open_set_needs_known_and_unknown_samples():
    with pytest.raises(ValueError, match="known samples"):
        metrics.open_set_scores([1, 1], [1, 1], [0.1, 0.2], unknown_index=1)
    with pytest.raises(ValueError, match="both positive"):
        metrics.open_set_scores([0, 0], [0, 0], [0.1, 0.2], unknown_index=1)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_base_to_new_and_h_score_match_sklearn():
    preds, refs, _ = _data(2)
    out = metrics.base_to_new_scores(preds[:120], refs[:120], preds[120:], refs[120:])
    assert out["base"] == pytest.approx(100 * accuracy_score(refs[:120], preds[:120]), rel=1e-12)
    assert out["new"] == pytest.approx(100 * accuracy_score(refs[120:], preds[120:]), rel=1e-12)
    hs = metrics.h_score(preds, refs, unknown_index=4)
    known = refs != 4
    assert hs["known"] == pytest.approx(100 * balanced_accuracy_score(refs[known], preds[known]), rel=1e-12)
    assert hs["unknown"] == pytest.approx(100 * np.mean(preds[~known] == 4), rel=1e-12)


def _inputs(name, preds, refs, rng):
    if name == "accuracy":
        return {}, {}
    if name == "h_score":
        return dict(unknown_index=4), {}
    if name == "gzsl":
        return dict(seen_classes=[0, 1, 2], unseen_classes=[3, 4]), {}
    if name == "open_set":
        return dict(unknown_index=4), {"scores": rng.random(len(refs)).tolist()}
    if name == "per_class_accuracy":
        return {}, {}
    return {}, {"is_new": (np.arange(len(refs)) % 3 == 0).tolist()}  # base_to_new


def _torch_value(name, preds, refs, kwargs, extra):
    if name == "accuracy":
        return {"accuracy": metrics.accuracy(preds, refs)}
    if name == "h_score":
        return metrics.h_score(preds, refs, **kwargs)
    if name == "gzsl":
        return metrics.gzsl_scores(preds, refs, **kwargs)
    if name == "open_set":
        return metrics.open_set_scores(preds, refs, extra["scores"], **kwargs)
    if name == "per_class_accuracy":
        return {"per_class_accuracy": metrics.per_class_accuracy(preds, refs)}
    new = np.asarray(extra["is_new"])
    return metrics.base_to_new_scores(preds[~new], refs[~new], preds[new], refs[new])


@pytest.mark.parametrize("name", NAMES)
def test_module_loads_offline_and_equals_the_torch_function(name, monkeypatch, tmp_path):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    preds, refs, rng = _data(3)
    kwargs, extra = _inputs(name, preds, refs, rng)
    expected = _torch_value(name, preds, refs, kwargs, extra)

    loaded = metrics.load_metric(name)
    assert isinstance(loaded, evaluate.Metric)
    assert loaded.compute(predictions=preds.tolist(), references=refs.tolist(), **extra, **kwargs) == expected
    # streamed in batches, as in an evaluation loop
    for lo in range(0, len(refs), 64):
        batch = {k: v[lo : lo + 64] for k, v in extra.items()}
        loaded.add_batch(predictions=preds[lo : lo + 64].tolist(), references=refs[lo : lo + 64].tolist(), **batch)
    assert loaded.compute(**kwargs) == expected
    # the same script through evaluate.load(<file>) and as a class
    import importlib

    module = importlib.import_module(f"hf_clipadapt.evaluate_modules.{name}")
    cls = next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, evaluate.Metric) and v is not evaluate.Metric
    )
    direct = cls().compute(predictions=preds.tolist(), references=refs.tolist(), **extra, **kwargs)
    assert direct == expected


def test_per_class_accuracy_module_matches_macro_recall():
    preds, refs, _ = _data(4)
    out = metrics.load_metric("per_class_accuracy").compute(predictions=preds, references=refs)
    assert out["per_class_accuracy"] == pytest.approx(100 * recall_score(refs, preds, average="macro"), rel=1e-12)


def test_unknown_metric_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="h_score, gzsl"):
        metrics.load_metric("f1")


def test_base_to_new_module_needs_both_sets():
    with pytest.raises(ValueError, match="both the base"):
        metrics.load_metric("base_to_new").compute(predictions=[0, 1], references=[0, 1], is_new=[True, True])


def test_accuracy_module_is_offline_and_in_percent(monkeypatch, tmp_path):
    # the Hub's "accuracy" needs the network; this one ships with the package
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    preds, refs, _ = _data(5)
    out = metrics.load_metric("accuracy").compute(predictions=preds, references=refs)
    assert out == {"accuracy": pytest.approx(100 * accuracy_score(refs, preds), rel=1e-12)}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("name", ["h_score", "open_set"])
def test_settings_can_be_given_at_load(name):
    # evaluate's evaluator calls compute(predictions=, references=) only: the unknown id must come at load
    preds, refs, rng = _data(6)
    kwargs, extra = _inputs(name, preds, refs, rng)
    expected = _torch_value(name, preds, refs, kwargs, extra)
    metric = metrics.load_metric(name, **kwargs)
    assert metric.compute(predictions=preds.tolist(), references=refs.tolist(), **extra) == expected
    # a value given to compute() wins over the one given at load
    other = metrics.load_metric(name, unknown_index=0)
    assert other.compute(predictions=preds.tolist(), references=refs.tolist(), **extra, **kwargs) == expected
    with pytest.raises(ValueError, match=f"needs unknown_index=.*load_metric\\('{name}', unknown_index=...\\)"):
        metrics.load_metric(name).compute(predictions=preds.tolist(), references=refs.tolist(), **extra)
