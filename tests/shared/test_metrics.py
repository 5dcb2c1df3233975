import pytest
import torch

from hf_clipadapt import metrics


def test_accuracy_from_logits_and_indices_agree():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert metrics.accuracy(logits, labels) == pytest.approx(75.0)
    assert metrics.accuracy(logits.argmax(-1), labels) == pytest.approx(75.0)


def test_topk_counts_label_anywhere_in_top_k():
    logits = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    labels = torch.tensor([0, 1, 2])
    assert metrics.topk_accuracy(logits, labels, k=1) == pytest.approx(100 / 3)
    assert metrics.topk_accuracy(logits, labels, k=2) == pytest.approx(200 / 3)
    assert metrics.topk_accuracy(logits, labels, k=10) == pytest.approx(100.0)


def test_per_class_accuracy_weights_classes_equally():
    # class 0: 4 samples all right; class 1: 1 sample wrong -> mean recall 50%, plain accuracy 80%
    preds = torch.tensor([0, 0, 0, 0, 0])
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert metrics.accuracy(preds, labels) == pytest.approx(80.0)
    assert metrics.per_class_accuracy(preds, labels) == pytest.approx(50.0)
    assert metrics.per_class_accuracy(preds, labels, classes=[0]) == pytest.approx(100.0)


def test_gzsl_scores_hand_checked_confusion():
    # seen {0,1}, unseen {2}. seen recalls: 1/2, 1 -> 75; unseen: 1/4 -> 25; H = 2*75*25/100 = 37.5
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 2, 1, 2, 0, 1, 0])
    out = metrics.gzsl_scores(preds, labels, seen_classes=[0, 1], unseen_classes=[2])
    assert out["seen"] == pytest.approx(75.0)
    assert out["unseen"] == pytest.approx(25.0)
    assert out["H"] == pytest.approx(37.5)


def test_gzsl_rejects_overlapping_class_sets():
    with pytest.raises(ValueError, match="overlap"):
        metrics.gzsl_scores([0], [0], seen_classes=[0, 1], unseen_classes=[1])


def test_h_score_hand_checked():
    # known classes 0,1; unknown index 2. known recalls 1.0 and 0.5 -> 75; unknown 2/3 -> 66.67
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 2, 2, 2, 0])
    out = metrics.h_score(preds, labels, unknown_index=2)
    assert out["known"] == pytest.approx(75.0)
    assert out["unknown"] == pytest.approx(200 / 3)
    assert out["H"] == pytest.approx(2 * 75 * (200 / 3) / (75 + 200 / 3))


def test_auroc_perfect_and_random_ranking():
    assert metrics.auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(100.0)
    assert metrics.auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="both positive"):
        metrics.auroc([0.1, 0.2], [1, 1])


def test_length_mismatch_and_empty_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="zero samples"):
        metrics.accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


def test_h_score_warns_when_one_side_is_empty():
    with pytest.warns(UserWarning, match="every label is unknown.*label2id"):
        out = metrics.h_score([0, 1, 5], [5, 5, 5], unknown_index=5)
    assert out == {"known": 0.0, "unknown": pytest.approx(100 / 3), "H": 0.0}
    with pytest.warns(UserWarning, match="no label is unknown"):
        assert metrics.h_score([0, 1], [0, 1], unknown_index=5)["H"] == 0.0
