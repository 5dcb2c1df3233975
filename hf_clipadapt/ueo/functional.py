"""UEO (Liang et al., "Realistic Unsupervised CLIP Fine-tuning with Universal Entropy
Optimization", ICML 2024) as functions of tensors.

Unlabelled target images may belong to the K known classes or to none of them. Each
image i gets a fixed weight w_i, the maximum softmax probability of the *initial*
zero-shot prediction (computed once, before training). With p_i = softmax(logits_i),

    L = Σ_i w_i·H(p_i) / Σ_i w_i  −  λ·H(p̄),   p̄ = Σ_i (1/w_i)·p_i / Σ_i (1/w_i),

so confident (likely known) images have their entropy minimised, and unconfident
(likely unknown) ones dominate the marginal whose entropy is maximised (λ = `trade`,
1 in the paper). With uniform weights this is information maximisation,
mean_i H(p_i) − λ·H(mean_i p_i).

Temperature of w: the official code takes the softmax of *unscaled* cosine
similarities, whose spread (≈0.1) makes w nearly uniform (≈1/K for every image), so
the weighting does almost nothing. We take it from the scaled logits the model
predicts with (CLIP's logit scale, ≈100), as the paper's equations state; the
measured weights of both on the testbed are in benchmarks/ueo/RESULTS.md.

OOD scores (higher = more likely a known class): the maximum softmax probability
(Hendrycks & Gimpel, ICLR 2017), UEO's default, and the energy score
T·logsumexp(logits/T) (Liu et al., NeurIPS 2020).
"""

from __future__ import annotations

import torch

OOD_SCORES = ("max_softmax", "energy")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_k p_k log p_k over the last dimension (0·log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def _check_logits_weights(logits: torch.Tensor, weights: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be [batch, classes] with batch >= 1, got {tuple(logits.shape)}")
    if weights.shape != logits.shape[:1]:
        raise ValueError(f"weights must be [batch] = [{logits.shape[0]}], got {tuple(weights.shape)}")
    if not (weights > 0).all() or not torch.isfinite(weights).all():
        raise ValueError("weights must be finite and > 0 (they are inverted for the marginal); got "
                         f"min {weights.min().item():.3g}")  # fmt: skip


def weighted_marginal(probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """p̄ = Σ_i (1/w_i)·p_i / Σ_i (1/w_i): the mean prediction, unconfident samples weighing most."""
    inverse = 1.0 / weights
    return (inverse[:, None] * probs).sum(0) / inverse.sum()


def ueo_loss(logits: torch.Tensor, weights: torch.Tensor, trade: float = 1.0) -> torch.Tensor:
    """Σ w_i·H(p_i)/Σ w_i − trade·H(p̄) for one batch (see the module docstring).

    Args:
        logits: [B, K] scaled logits over the known classes.
        weights: [B] fixed positive per-sample weights (`zero_shot_weights` of the initial model).
        trade: λ, the weight of the marginal-entropy term.
    """
    weights = weights.to(device=logits.device, dtype=logits.dtype)
    _check_logits_weights(logits, weights)
    probs = logits.softmax(-1)
    conditional = (weights * entropy(probs)).sum() / weights.sum()
    return conditional - trade * entropy(weighted_marginal(probs, weights))


def information_maximization_loss(logits: torch.Tensor, trade: float = 1.0) -> torch.Tensor:
    """mean_i H(p_i) − trade·H(mean_i p_i): `ueo_loss` with uniform weights (UEO's "no weight" ablation)."""
    return ueo_loss(logits, torch.ones(logits.shape[0], device=logits.device, dtype=logits.dtype), trade)


def zero_shot_weights(logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """w_i = max_k softmax(scale·logits_i): pass the model's scaled logits (scale 1, our
    choice), or raw cosine similarities with scale 1 to reproduce the official code."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got {tuple(logits.shape)}")
    return (scale * logits.float()).softmax(-1).amax(-1)


def oracle_weights(is_known: torch.Tensor, epsilon: float = 1e-3) -> torch.Tensor:
    """The official code's oracle ablation: w = 1[known] + ε from ground-truth membership
    (privileged information, an upper reference for the weighting, never a method)."""
    return is_known.float() + epsilon


def max_softmax_score(logits: torch.Tensor) -> torch.Tensor:
    """[N] maximum softmax probability (higher = more likely known)."""
    return logits.float().softmax(-1).amax(-1)


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N] negative free energy T·logsumexp(logits/T) (higher = more likely known)."""
    return temperature * torch.logsumexp(logits.float() / temperature, dim=-1)


def ood_score(logits: torch.Tensor, kind: str = "max_softmax") -> torch.Tensor:
    """The OOD score named `kind` ("max_softmax" or "energy")."""
    if kind == "max_softmax":
        return max_softmax_score(logits)
    if kind == "energy":
        return energy_score(logits)
    raise ValueError(f"unknown OOD score {kind!r}; use one of {OOD_SCORES}")
