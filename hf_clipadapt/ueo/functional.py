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

Temperature of w: the official code (tim-learn/UEO, demo.py lines 425 and 453-454)
takes the softmax of *unscaled* cosine similarities, whose spread (≈0.1) makes w nearly
uniform (≈1/K for every image). That is our default too (`zero_shot_weights` of raw
cosines, `fit(weights_from="cosine")`); `weights_from="logits"` takes it from the scaled
logits the model predicts with (CLIP's logit scale, ≈100) instead. The measured weights
of both on the testbed are in benchmarks/ueo/RESULTS.md.

Entropy: the official code computes −Σ p·log(p + 1e-5) (demo.py lines 328-345, in
the conditional and the marginal term alike); `epsilon=1e-5` is our default as well,
`epsilon=0` gives the exact entropy (0·log 0 = 0).

OOD scores (higher = more likely a known class): the maximum softmax probability
(Hendrycks & Gimpel, ICLR 2017) of the *unscaled* cosines ("max_softmax_cosine", the
official code's score and AUROC: demo.py lines 291-303 on the cosines of lines 312-321),
the maximum softmax probability of the scaled logits ("max_softmax"; its ranking differs,
the temperature changes which images look confident), and the energy score
T·logsumexp(logits/T) (Liu et al., NeurIPS 2020).
"""

from __future__ import annotations

import torch

OOD_SCORES = ("max_softmax_cosine", "max_softmax", "energy")
OFFICIAL_LOG_EPSILON = 1e-5


def entropy(probs: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """H(p) = −Σ_k p_k log(p_k + ε) over the last dimension; ε = 0: exact (0·log 0 = 0)."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if epsilon == 0:
        return -torch.special.xlogy(probs, probs).sum(-1)
    return -(probs * torch.log(probs + epsilon)).sum(-1)


def _check_logits_weights(logits: torch.Tensor, weights: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be [batch, classes] with batch >= 1, got {tuple(logits.shape)}")
    if weights.shape != logits.shape[:1]:
        raise ValueError(f"weights must be [batch] = [{logits.shape[0]}], got {tuple(weights.shape)}")
    if not (weights > 0).all() or not torch.isfinite(weights).all():
        raise ValueError(
            f"weights must be finite and > 0 (they are inverted for the marginal); got min {weights.min().item():.3g}"
        )


def weighted_marginal(probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """p̄ = Σ_i (1/w_i)·p_i / Σ_i (1/w_i): the mean prediction, unconfident samples weighing most."""
    inverse = 1.0 / weights
    return (inverse[:, None] * probs).sum(0) / inverse.sum()


def ueo_loss(
    logits: torch.Tensor, weights: torch.Tensor, trade: float = 1.0, epsilon: float = OFFICIAL_LOG_EPSILON
) -> torch.Tensor:
    """Σ w_i·H(p_i)/Σ w_i − trade·H(p̄) for one batch (see the module docstring).

    Args:
        logits: [B, K] scaled logits over the known classes.
        weights: [B] fixed positive per-sample weights (`zero_shot_weights` of the initial model).
        trade: λ, the weight of the marginal-entropy term.
        epsilon: ε inside the log of both entropies (official: 1e-5; 0: exact entropy).
    """
    weights = weights.to(device=logits.device, dtype=logits.dtype)
    _check_logits_weights(logits, weights)
    probs = logits.softmax(-1)
    conditional = (weights * entropy(probs, epsilon)).sum() / weights.sum()
    return conditional - trade * entropy(weighted_marginal(probs, weights), epsilon)


def information_maximization_loss(
    logits: torch.Tensor, trade: float = 1.0, epsilon: float = OFFICIAL_LOG_EPSILON
) -> torch.Tensor:
    """mean_i H(p_i) − trade·H(mean_i p_i): `ueo_loss` with uniform weights (UEO's "no weight" ablation)."""
    ones = torch.ones(logits.shape[0], device=logits.device, dtype=logits.dtype)
    return ueo_loss(logits, ones, trade, epsilon)


def zero_shot_weights(logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """w_i = max_k softmax(scale·logits_i): raw cosine similarities with scale 1 (the official
    code, our default in `fit`), or the model's scaled logits (`weights_from="logits"`)."""
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


def ood_score(
    logits: torch.Tensor, kind: str = "max_softmax_cosine", logit_scale: float | None = None
) -> torch.Tensor:
    """The OOD score named `kind` of scaled `logits`: "max_softmax_cosine" (the official one;
    needs the `logit_scale` the logits were multiplied by), "max_softmax" or "energy"."""
    if kind == "max_softmax_cosine":
        if logit_scale is None or not logit_scale > 0:
            raise ValueError(
                f"the official score 'max_softmax_cosine' needs the model's logit_scale (> 0), got {logit_scale}"
            )
        return max_softmax_score(logits.float() / logit_scale)
    if kind == "max_softmax":
        return max_softmax_score(logits)
    if kind == "energy":
        return energy_score(logits)
    raise ValueError(f"unknown OOD score {kind!r}; use one of {OOD_SCORES}")
