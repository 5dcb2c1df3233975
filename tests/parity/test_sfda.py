"""Parity of `hf_clipadapt.sfda` with the official code, re-derived in float64 numpy.

References (read line by line; re-derived, not copied):
- SHOT pseudo-labels: tim-learn/SHOT @ f7d555a, object/image_target.py, `obtain_label`,
  lines 263-288 (cosine features with a constant 1, soft centroids, labelset = classes
  with more than `--threshold` argmax samples, 2 rounds), `--threshold 0` (line 316),
  `--distance cosine` (line 326). GeoImNet's single round: tim-learn/GeoNet23_casia_tim
  @ 221ad1a, main_imnet.py, lines 404-419.
- SHOT's stage-2 loss: object/image_target.py lines 190-207 (`--cls_par` 0.3 · CE +
  `--ent_par` 1 · (mean H(p) − H(mean p)), both with log(· + 1e-5)); object/loss.py lines 9-14.
- Universal stage-2 loss: tim-learn/GeoNet23_casia_tim, main_unida.py, `obtain_label`
  lines 438-443 (argmax labels, w = 1 − H(p)/log C with log(p + 1e-5)) and `train_target`
  lines 384-396 (δ = 0.2·progress; CE on w > 0.5 + δ; −0.3 · mean entropy on w < 0.5 − δ).
- GeoPlace's loss: main_place.py lines 360-370 and 404-408.
"""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from hf_clipadapt.sfda import SFDAConfig, SFDAForImageClassification, SFDATrainingArguments
from hf_clipadapt.sfda import functional as SF
from hf_clipadapt.sfda.training import pseudo_labels

EPS = 1e-5  # --epsilon in both repositories


# ------------------------------------------------------------------ float64 references
def ref_softmax(logits):
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def ref_obtain_label(feas, logits, rounds=2, threshold=0):
    """SHOT's obtain_label (image_target.py lines 263-288) in float64."""
    out = ref_softmax(logits)
    predict = out.argmax(1)
    fea = np.concatenate([feas, np.ones((feas.shape[0], 1))], 1)
    fea = fea / np.linalg.norm(fea, axis=1, keepdims=True)
    num_classes = out.shape[1]
    aff = out
    for _ in range(rounds):
        initc = aff.T @ fea / (1e-8 + aff.sum(0)[:, None])
        cls_count = np.eye(num_classes)[predict].sum(0)
        labelset = np.where(cls_count > threshold)[0]
        dd = cdist(fea, initc[labelset], "cosine")
        predict = labelset[dd.argmin(1)]
        aff = np.eye(num_classes)[predict]
    return predict, dd


def ref_universal_loss(logits, mem_label, known_weight, progress):
    """main_unida.py lines 384-396 for one batch, the step's progress = iter_num / max_iter."""
    delta = 0.2 * progress
    hi, lo = 0.5 + delta, 0.5 - delta
    p = ref_softmax(logits)
    conf = known_weight > hi
    log_p = np.log(p)
    ce = -log_p[conf, mem_label[conf]].mean()
    unk = p[known_weight < lo]
    ent = (-unk * np.log(unk + EPS)).sum(1).mean()
    return ce - 0.3 * ent


def ref_unida_obtain_label(logits):
    """main_unida.py lines 438-443: argmax labels and w = 1 − H(p)/log C."""
    p = ref_softmax(logits)
    ent = (-p * np.log(p + EPS)).sum(1)
    return p.argmax(1), 1 - ent / np.log(p.shape[1])


def ref_shot_loss(logits, pred, cls_par=0.3):
    """image_target.py lines 190-207: cls_par · CE + mean H(p) − H(mean p)."""
    p = ref_softmax(logits)
    ce = -np.log(p[np.arange(len(pred)), pred]).mean()
    ent = (-p * np.log(p + EPS)).sum(1).mean()
    m = p.mean(0)
    return cls_par * ce + ent - (-m * np.log(m + EPS)).sum()


# ------------------------------------------------------------------ the library
def _tiny_model(num_labels, strategy):
    from transformers import SwinConfig

    torch.manual_seed(0)
    swin = SwinConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=2,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    cfg = SFDAConfig(backbone=None, backbone_config=swin, num_labels=num_labels, bottleneck_dim=8, strategy=strategy)
    model = SFDAForImageClassification(cfg).double().eval()
    with torch.no_grad():  # a head whose argmax misses some classes, as a weak source model's does
        model.head.classifier.bias.copy_(torch.linspace(3.0, -3.0, num_labels, dtype=torch.float64))
    return model


def _outputs(model, n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 16, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model(pixel_values=pixels)
    return out.logits, out.features


def _min_gap(dd):
    """Smallest margin between the nearest and second-nearest centroid (ties would make argmin ambiguous)."""
    part = np.sort(dd, 1)
    return (part[:, 1] - part[:, 0]).min() if dd.shape[1] > 1 else np.inf


@pytest.mark.parametrize("rounds", [1, 2])
def test_shot_pseudo_labels_match_obtain_label(rounds):
    model = _tiny_model(num_labels=10, strategy="shot")
    logits, feats = _outputs(model)
    expected, dd = ref_obtain_label(feats.numpy(), logits.numpy(), rounds=rounds)
    assert _min_gap(dd) > 1e-4  # float32 centroid distances cannot flip a label
    assert len(set(logits.argmax(1).tolist())) < 10  # the labelset rule is exercised
    got = SF.shot_pseudo_labels(feats, logits.softmax(-1), rounds=rounds)
    np.testing.assert_array_equal(got.numpy(), expected)
    # the trainer's pass (the model's logits and bottleneck features, as SHOT's netB(netF(x)))
    args = SFDATrainingArguments(stage="target", shot_rounds=rounds)
    labels = pseudo_labels(model.config, args, logits, feats, {})["labels"]
    np.testing.assert_array_equal(labels.numpy(), expected)


def test_geoimnet_centroid_preset_is_one_round_of_obtain_label():
    model = _tiny_model(num_labels=10, strategy="centroid")
    logits, feats = _outputs(model, seed=1)
    expected, dd = ref_obtain_label(feats.numpy(), logits.numpy(), rounds=1)
    assert _min_gap(dd) > 1e-4
    args = SFDATrainingArguments.from_preset("geoimnet", "target")
    labels = pseudo_labels(model.config, args, logits, feats, {})["labels"]
    np.testing.assert_array_equal(labels.numpy(), expected)


def test_shot_stage_2_loss_matches_image_target():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 6, generator=g, dtype=torch.float64)
    pred = torch.randint(0, 6, (16,), generator=g)
    ours = 0.3 * torch.nn.functional.cross_entropy(logits, pred) + SF.information_maximization_loss(logits)
    assert ours.item() == pytest.approx(ref_shot_loss(logits.numpy(), pred.numpy()), rel=1e-12)


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_universal_pseudo_labels_and_loss_match_main_unida(progress):
    model = _tiny_model(num_labels=6, strategy="universal")
    logits, feats = _outputs(model, n=64, seed=3)
    logits = logits * torch.linspace(0.05, 4.0, 64, dtype=torch.float64)[:, None]  # weights on both sides
    mem_label, known_weight = ref_unida_obtain_label(logits.numpy())
    pseudo = pseudo_labels(model.config, SFDATrainingArguments(stage="target"), logits, feats, {})
    np.testing.assert_array_equal(pseudo["labels"].numpy(), mem_label)
    np.testing.assert_allclose(pseudo["weights"].numpy(), known_weight, rtol=0, atol=1e-12)
    hi, lo = 0.5 + 0.2 * progress, 0.5 - 0.2 * progress
    assert (known_weight > hi).sum() >= 2 and (known_weight < lo).sum() >= 2  # both terms are active
    # a batch through the model, as one training step sees it
    idx = torch.arange(24) * 5 % 64
    batch = _outputs(model, n=24, seed=4)[0] * 2
    got = SF.universal_loss(batch, pseudo["labels"][idx], pseudo["weights"][idx], progress)
    expected = ref_universal_loss(batch.numpy(), mem_label[idx], known_weight[idx], progress)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_geoplace_loss_matches_main_place():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(12, 7, generator=g, dtype=torch.float64)
    source_probs = torch.randn(12, 7, generator=g, dtype=torch.float64).softmax(-1)
    top = np.argsort(-source_probs.numpy(), 1)[:, :3]  # torch.topk(all_output, 3)[1].T, transposed back
    p = ref_softmax(logits.numpy())
    rows = np.arange(12)
    expected = 0.3 * -np.log(p[rows, top[:, 0]]).mean() + 0.1 * -np.log(p[rows, top[:, 1]]).mean()
    cand = SF.topk_candidates(source_probs, 2)
    got = SF.topk_cross_entropy_loss(logits, cand, (0.3, 0.1))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(got.item())
