"""Open-set evaluation: unknown images (label -1, or a class name the model lacks) and the metrics."""

import pytest
import torch

from hf_clipadapt.metrics import auroc, open_set_scores, per_class_accuracy
from hf_clipadapt.testing_utils import tiny_image_dataset
from hf_clipadapt.ueo import UEOForImageClassification
from hf_clipadapt.ueo.evaluation import open_set_metrics

from .helpers import NAMES, backbone


def test_metrics_on_a_constructed_case():
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0.1, 0, 0], [0, 0, 0.2]])
    labels = torch.tensor([0, 1, 1, -1, -1])
    m = open_set_metrics(logits, labels, logit_scale=1.0)
    assert m["accuracy"] == pytest.approx(200 / 3) and m["per_class_accuracy"] == pytest.approx(75.0)
    assert m["auroc"] == pytest.approx(100.0) and m["h_score"] == pytest.approx(2 * 75 * 100 / 175)
    assert (m["num_known"], m["num_unknown"]) == (3, 2)
    closed = open_set_metrics(logits[:3], labels[:3], logit_scale=1.0)
    assert "auroc" not in closed
    with pytest.raises(ValueError, match="no image of a known class"):
        open_set_metrics(logits[3:], labels[3:], logit_scale=1.0)
    with pytest.raises(ValueError, match="needs logit_scale="):
        open_set_metrics(logits, labels)


def test_auroc_ranks_by_the_official_unscaled_cosine_score():
    """tim-learn/UEO demo.py ranks images by the max softmax of cosines without the ×100
    (lines 291-304, 321); the temperature changes that ranking. Image 0 (known) has a clear
    top class over three equal ones, image 1 (unknown) two close top classes over two zeros."""
    cos = torch.tensor(
        [[0.20, 0.10, 0.10, 0.10], [0.30, 0.29, 0.0, 0.0], [0.26, 0.26, 0.26, 0.26]], dtype=torch.float64
    )
    labels = torch.tensor([0, -1, -1])
    for scale in (100.0, 18.0):
        m = open_set_metrics(scale * cos, labels, logit_scale=scale)
        official = cos.softmax(-1).amax(-1)  # image 1 (unknown) outranks image 0 (known)
        scaled = (scale * cos).softmax(-1).amax(-1)  # image 0 outranks image 1
        assert official[1] > official[0] and scaled[0] > scaled[1]
        assert m["auroc"] == pytest.approx(auroc(official, labels >= 0)) == pytest.approx(50.0)
        assert m["auroc_scaled"] == pytest.approx(auroc(scaled, labels >= 0)) == pytest.approx(100.0)
        assert m["h_score"] == pytest.approx(2 * 100 * 50 / 150) and "auroc_energy" not in m
    assert "auroc_energy" in open_set_metrics(100 * cos, labels, "energy", logit_scale=100.0)


def test_evaluate_maps_unknown_class_names_to_unknown():
    data = tiny_image_dataset(4, 3, class_names=["green", "black", "red", "blue"])  # "black": unknown, ids reordered
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    model.config.is_fitted = True
    result = model.evaluate(data, record_as="tiny")
    feats, labels = model.encode_dataset(data)
    logits = model.predict_features(feats)
    ours = torch.tensor([1, -1, 0, 2])[labels]
    expected = open_set_scores(
        logits, ours, (logits / model.config.logit_scale).softmax(-1).amax(-1), unknown_index=-1
    )
    assert result["per_class_accuracy"] == pytest.approx(expected["known"])
    assert result["auroc"] == pytest.approx(expected["auroc"]) and result["h_score"] == pytest.approx(expected["H"])
    assert result["per_class_accuracy"] == pytest.approx(per_class_accuracy(logits[ours >= 0], ours[ours >= 0]))
    assert {r["metric_type"] for r in model.config.eval_results} >= {"auroc", "h_score", "per_class_accuracy"}


def test_evaluate_needs_labels():
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    with pytest.raises(ValueError, match="needs labels"):
        model.evaluate(tiny_image_dataset(3, 2).remove_columns("label"))
