"""The pure-tensor core against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.metrics import h_score
from hf_clipadapt.sfda import functional as SF


def test_label_smoothing_ce_by_hand():
    # p = [1/4, 1/4, 1/2], y = 2, eps = 0.1, C = 3:
    # (1 - eps)·(-log 1/2) + eps·mean(-log p) = 0.9·ln2 + 0.1·(2 ln4 + ln2)/3 = (0.9 + 1/6)·ln2
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    got = SF.label_smoothing_cross_entropy(logits, torch.tensor([2]), 0.1)
    assert got.item() == pytest.approx((0.9 + 1 / 6) * math.log(2.0), abs=1e-6)
    # and torch's own definition agrees on a random batch
    logits, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(
        SF.label_smoothing_cross_entropy(logits, y, 0.1), F.cross_entropy(logits, y, label_smoothing=0.1)
    )
    # eps = 0 is plain CE
    torch.testing.assert_close(SF.label_smoothing_cross_entropy(logits, y, 0.0), F.cross_entropy(logits, y))


def test_soft_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    q = torch.tensor([[0.5, 0.5]])
    assert SF.soft_cross_entropy(logits, q).item() == pytest.approx(
        0.5 * math.log(4) + 0.5 * math.log(4 / 3), abs=1e-6
    )


def test_ema_update_by_hand():
    teacher = [torch.tensor([1.0, 2.0]), torch.tensor(3)]
    student = [torch.tensor([3.0, 4.0]), torch.tensor(7)]
    SF.ema_update_(teacher, student, decay=0.95)
    torch.testing.assert_close(teacher[0], torch.tensor([0.95 * 1 + 0.05 * 3, 0.95 * 2 + 0.05 * 4]))
    assert teacher[1].item() == 7  # integer buffers (BatchNorm counters) are copied
    SF.ema_update_(teacher, student, decay=0.0)
    torch.testing.assert_close(teacher[0], student[0])


def test_ema_update_module_state_dicts():
    a, b = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        b.weight.fill_(3.0)
        b.running_mean.fill_(1.0)
    SF.ema_update_(a.state_dict().values(), b.state_dict().values(), 0.5)
    torch.testing.assert_close(a.weight.detach(), torch.full((2,), 2.0))
    torch.testing.assert_close(a.running_mean, torch.full((2,), 0.5))


def test_entropy_weights_and_unknown_rule():
    probs = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])
    ne = SF.normalized_entropy(probs)
    torch.testing.assert_close(ne[:2], torch.tensor([0.0, 1.0]))
    h = -(0.98 * math.log(0.98) + 2 * 0.01 * math.log(0.01)) / math.log(3)
    assert ne[2].item() == pytest.approx(h, abs=1e-6)
    torch.testing.assert_close(SF.confidence_weights(probs, eps=0.0), 1 - ne)
    # the default keeps the official log(p + 1e-5) (GeoNet23_casia_tim, main_unida.py line 439)
    official = 1 + (probs * torch.log(probs + 1e-5)).sum(-1) / math.log(3)
    torch.testing.assert_close(SF.confidence_weights(probs), official)
    assert not torch.equal(SF.confidence_weights(probs), SF.confidence_weights(probs, eps=0.0))
    # H/log C > 0.5 → unknown (index 3); exactly-uniform and near-uniform rows rejected, confident ones kept
    assert SF.predict_with_unknown(probs, 0.5, 3).tolist() == [0, 3, 0, 3]
    assert SF.predict_with_unknown(probs, None, 3).tolist() == [0, 0, 0, 0]
    assert SF.predict_with_unknown(probs, 0.05, 3).tolist() == [0, 3, 3, 3]  # h(row 2) ≈ 0.10 > 0.05


def test_universal_thresholds_and_loss():
    assert SF.universal_thresholds(0.0) == (0.5, 0.5)
    assert SF.universal_thresholds(0.5) == pytest.approx((0.6, 0.4))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.1, 0.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([0.9, 0.5, 0.1])  # confident / ignored / likely unknown at progress 0.5
    got = SF.universal_loss(logits, labels, weights, progress=0.5, delta=0.2, entropy_weight=0.3)
    want = F.cross_entropy(logits[:1], labels[:1]) - 0.3 * SF.entropy(logits[2:].softmax(-1)).mean()
    torch.testing.assert_close(got, want)
    # nothing selected: zero, but still differentiable
    zero = SF.universal_loss(logits.requires_grad_(), labels, torch.full((3,), 0.5), progress=0.5)
    zero.backward()
    assert zero.item() == 0.0


def test_information_maximization_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.5], [1.0 - 1e-7, 1e-7]]))
    # mean H = (ln2 + ~0)/2, p̄ = [0.75, 0.25], H(p̄) = -(0.75 ln .75 + .25 ln .25)
    want = math.log(2) / 2 - (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert SF.information_maximization_loss(logits).item() == pytest.approx(want, abs=1e-3)


def test_shot_centroids_known_answer():
    # two clusters along the axes; sample 1 is mispredicted by the classifier but sits
    # in cluster 0, so centroid labelling moves it back
    feats = torch.tensor([[10.0, 0.0], [9.0, 1.0], [0.0, 10.0], [1.0, 9.0]])
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8]])
    assert probs.argmax(1).tolist() == [0, 1, 1, 1]
    assert SF.shot_pseudo_labels(feats, probs, rounds=1).tolist() == [0, 0, 1, 1]
    assert SF.shot_pseudo_labels(feats, probs, rounds=2).tolist() == [0, 0, 1, 1]
    # a class that no sample is closest to gets no centroid in the hard round
    probs3 = torch.cat([probs, torch.zeros(4, 1)], 1)
    assert SF.shot_pseudo_labels(feats, probs3, rounds=2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="differ in length"):
        SF.shot_pseudo_labels(feats, probs[:3])


def test_shot_round_one_uses_soft_centroids_with_appended_one():
    # hand computation of round 1 on 3 samples, 2 classes
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    probs = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    f = F.normalize(torch.cat([feats, torch.ones(3, 1)], 1), dim=1)
    c = (probs.t() @ f) / probs.sum(0)[:, None]
    want = (1 - f @ F.normalize(c, dim=1).t()).argmin(1)
    assert SF.shot_pseudo_labels(feats, probs, rounds=1).tolist() == want.tolist()


def test_topk_candidates_and_loss():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    cand = SF.topk_candidates(probs, 2)
    assert cand.tolist() == [[1, 2], [0, 2]]
    logits = probs.log()
    want = 0.3 * -(math.log(0.6) + math.log(0.5)) / 2 - (math.log(0.9) + math.log(0.8)) / 2
    assert SF.topk_pseudo_label_loss(logits, cand, 0.3).item() == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        SF.topk_candidates(probs, 4)


def test_lr_schedule_and_class_weights():
    assert SF.lr_factor(0.0) == 1.0
    assert SF.lr_factor(0.5) == pytest.approx(1 / 6)
    assert SF.lr_factor(1.0) == pytest.approx(1 / 11)
    assert SF.lr_factor(1.0, power=0.75) == pytest.approx(11**-0.75)
    torch.testing.assert_close(
        SF.class_balanced_weights(torch.tensor([0, 0, 0, 1])),
        torch.tensor([4 / 3, 4 / 3, 4 / 3, 4.0], dtype=torch.float64),
    )


def test_h_score_hand_checked_confusion():
    # known classes 0, 1; unknown index 2
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 0, 2])
    # recall(0) = 1/2, recall(1) = 1 → known 75%; unknown 2/4 = 50%; H = 2·75·50/125 = 60
    out = h_score(preds, labels, unknown_index=2, known_classes=[0, 1])
    assert out == pytest.approx({"known": 75.0, "unknown": 50.0, "H": 60.0})
