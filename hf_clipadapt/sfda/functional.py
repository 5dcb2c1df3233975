"""Pure-tensor core of the two-stage source-free DA recipe (GeoNet 2023 challenge solution, ICCV 2023 workshop).

Everything here is a function of tensors: no models, no data loaders, no
Accelerate. The HF classes and the training loop in `training.py` only call these.
Probabilities are softmax outputs `[N, C]`; entropies use the natural log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from ..training.samplers import class_balanced_weights  # noqa: F401  (re-exported; used by the sampler)

# ---------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------


def label_smoothing_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Mean CE against the smoothed target q = (1 − ε)·onehot(y) + ε/C.

    Equals (1 − ε)·CE(y) + ε·mean_c(−log p_c).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, C], got shape {tuple(logits.shape)}")
    log_p = logits.log_softmax(-1)
    nll = -log_p.gather(1, targets.long()[:, None]).squeeze(1)
    uniform = -log_p.mean(-1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of −Σ_c q_c log p_c, with q a (teacher's) probability vector."""
    return -(target_probs * logits.log_softmax(-1)).sum(-1).mean()


def entropy(probs: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample Shannon entropy H(p) = −Σ p log p, [N, C] → [N]."""
    return -(probs * torch.log(probs + eps)).sum(-1)


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p)/log C ∈ [0, 1]: 0 for a one-hot prediction, 1 for the uniform one (exact, 0·log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1) / math.log(probs.shape[-1])


def confidence_weights(probs: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """w = 1 − H(p)/log C, the universal stage's per-sample confidence, with H = −Σ p log(p + eps)
    as the official `obtain_label` computes it (tim-learn/GeoNet23_casia_tim, main_unida.py,
    lines 438-440; eps = `--epsilon` 1e-5). eps = 0 gives the exact entropy (0·log 0 = 0)."""
    if eps == 0:
        return 1.0 - normalized_entropy(probs)
    return 1.0 - entropy(probs, eps) / math.log(probs.shape[-1])


def information_maximization_loss(logits: torch.Tensor) -> torch.Tensor:
    """SHOT's IM objective: mean_i H(p_i) − H(mean_i p_i).

    Low when each prediction is confident (first term) and the batch's predictions
    cover the classes evenly (second term, the diversity bonus).
    """
    probs = logits.softmax(-1)
    return entropy(probs).mean() - entropy(probs.mean(0, keepdim=True)).squeeze(0)


def universal_thresholds(progress: float, delta: float = 0.2, centre: float = 0.5) -> tuple[float, float]:
    """The moving thresholds (0.5 + δ, 0.5 − δ) with δ = `delta`·progress, progress ∈ [0, 1]."""
    d = delta * float(progress)
    return centre + d, centre - d


def universal_loss(
    logits: torch.Tensor,
    pseudo_labels: torch.Tensor,
    weights: torch.Tensor,
    progress: float,
    *,
    delta: float = 0.2,
    entropy_weight: float = 0.3,
) -> torch.Tensor:
    """Universal stage-2 loss on a batch.

    `pseudo_labels` and `weights` come from the per-epoch prediction pass. Samples
    with w > 0.5 + δ are pulled to their pseudo-label (CE); samples with w < 0.5 − δ
    (likely unknown) get their entropy *maximised* (−`entropy_weight`·mean H).
    Samples in between are ignored. Each term is a mean over its own samples.
    """
    hi, lo = universal_thresholds(progress, delta)
    confident, uncertain = weights > hi, weights < lo
    loss = logits.sum() * 0.0  # keeps the graph (and DDP) happy when a batch selects nothing
    if confident.any():
        loss = loss + F.cross_entropy(logits[confident], pseudo_labels[confident].long())
    if uncertain.any():
        loss = loss - entropy_weight * entropy(logits[uncertain].softmax(-1)).mean()
    return loss


def topk_pseudo_label_loss(logits: torch.Tensor, candidates: torch.Tensor, top1_weight: float = 0.3) -> torch.Tensor:
    """Loss against fixed top-k candidate labels `[N, k]` (column 0 = top-1).

    `top1_weight`·CE(top-1) + (−log Σ_{c ∈ candidates} p_c): the second term only asks
    the probability mass to stay inside the source model's k candidates, so a sample
    whose top-1 was wrong but top-2 right can still move to the right class.
    """
    log_p = logits.log_softmax(-1)
    ce_top1 = -log_p.gather(1, candidates[:, :1].long()).mean()
    set_loss = -torch.logsumexp(log_p.gather(1, candidates.long()), dim=1).mean()
    return top1_weight * ce_top1 + set_loss


def topk_cross_entropy_loss(logits: torch.Tensor, candidates: torch.Tensor, weights=(0.3, 0.1)) -> torch.Tensor:
    """Σ_j weights[j]·CE(candidates[:, j]): GeoPlace's stage-2 loss, 0.3·CE(top-1) + 0.1·CE(top-2)
    with the candidates fixed from the source model (tim-learn/GeoNet23_casia_tim, main_place.py,
    lines 360-370 and 404-408). No IM term."""
    if candidates.shape[1] < len(weights):
        raise ValueError(
            f"{len(weights)} weights need at least {len(weights)} candidates per sample, got {candidates.shape[1]}"
        )
    log_p = logits.log_softmax(-1)
    terms = [-w * log_p.gather(1, candidates[:, j : j + 1].long()).mean() for j, w in enumerate(weights)]
    return torch.stack(terms).sum()


# ---------------------------------------------------------------------------------
# Pseudo-labels and decisions
# ---------------------------------------------------------------------------------


def shot_pseudo_labels(
    features: torch.Tensor, probs: torch.Tensor, rounds: int = 2, threshold: int = 0
) -> torch.Tensor:
    """SHOT's self-supervised pseudo-labels from target features and predictions.

    Re-derived from `obtain_label` in tim-learn/SHOT, object/image_target.py, lines
    263-288 (and the one-round version in tim-learn/GeoNet23_casia_tim, main_imnet.py,
    lines 404-419). Features get a constant 1 appended and are L2-normalised. Each
    round computes class centroids weighted by the current affinity (round 1: the soft
    predictions; later rounds: the previous round's one-hot labels) and labels each
    sample with its nearest centroid in cosine distance. In every round, round 1
    included, only the classes that own more than `threshold` samples of the current
    hard labels (round 1: the argmax of `probs`) may be chosen; the others keep no
    centroid. Returns [N] long.
    """
    if features.shape[0] != probs.shape[0]:
        raise ValueError(f"features ({features.shape[0]}) and probs ({probs.shape[0]}) differ in length")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    feats = torch.cat([features.float(), features.new_ones(features.shape[0], 1).float()], dim=1)
    feats = F.normalize(feats, dim=1)
    affinity = probs.float()
    num_classes = probs.shape[1]
    labels = probs.argmax(1)
    for _ in range(rounds):
        centroids = affinity.t() @ feats / (affinity.sum(0)[:, None] + 1e-8)
        distance = 1.0 - feats @ F.normalize(centroids, dim=1).t()  # cosine distance [N, C]
        counts = torch.bincount(labels, minlength=num_classes)
        distance[:, counts <= threshold] = float("inf")  # only classes that own samples have a centroid
        labels = distance.argmin(1)
        affinity = F.one_hot(labels, num_classes).float()
    return labels


def topk_candidates(probs: torch.Tensor, k: int = 2) -> torch.Tensor:
    """The k most probable classes per sample, [N, k], most probable first."""
    if not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k must be in [1, {probs.shape[1]}], got {k}")
    return probs.topk(k, dim=1).indices


def predict_with_unknown(probs: torch.Tensor, threshold: float | None, unknown_index: int) -> torch.Tensor:
    """argmax p, replaced by `unknown_index` where H(p)/log C > `threshold` (None: closed set)."""
    preds = probs.argmax(-1)
    if threshold is None:
        return preds
    return torch.where(normalized_entropy(probs) > threshold, torch.full_like(preds, unknown_index), preds)


# ---------------------------------------------------------------------------------
# Optimisation helpers
# ---------------------------------------------------------------------------------


def lr_factor(progress: float, gamma: float = 10.0, power: float = 1.0) -> float:
    """The schedule multiplier (1 + γ·p)^−power, p ∈ [0, 1] the fraction of training done."""
    return (1.0 + gamma * float(progress)) ** (-power)


@torch.no_grad()
def ema_update_(teacher: Iterable[torch.Tensor], student: Iterable[torch.Tensor], decay: float = 0.95) -> None:
    """In place θ_t ← decay·θ_t + (1 − decay)·θ_s for floating tensors; others copied.

    The recipe passes `teacher.parameters()` and the student's: the official teacher
    averages parameters only, its BatchNorm statistics stay those copied when it started
    (tim-learn/GeoNet23_casia_tim, main_unida.py, lines 256-262). Passing
    `state_dict().values()` makes the running statistics follow too (integer counters copied).
    """
    for t, s in zip(teacher, student, strict=True):
        if t.is_floating_point():
            t.mul_(decay).add_(s.detach().to(t.dtype), alpha=1.0 - decay)
        else:
            t.copy_(s)
