"""Unsupervised GDA: EM on unlabelled features, started from zero-shot CLIP's posteriors
(Wang et al., ICLR 2024, the unsupervised variant). Plain tensors in, tensors out."""

from __future__ import annotations

import math

import torch

from .functional import _check_features, _classifier_from_moments, _is_degenerate

__all__ = ["fit_gda_em"]


def _mixture_log_likelihood(x: torch.Tensor, means: torch.Tensor, prec_means: torch.Tensor, scatter, energy) -> float:
    """Mean per-sample log-likelihood of x under the uniform-prior Gaussian mixture
    with means μ_k and the KS precision P (up to the constant −D/2·log 2π)."""
    num_samples, dim = x.shape
    num_classes = means.shape[0]
    if _is_degenerate(scatter, num_samples, energy):
        px, logdet_p = x, 0.0  # the Σ = I fallback
    else:
        shrunk = scatter.clone()
        shrunk.diagonal().add_(torch.diagonal(scatter).sum() / (num_samples - 1))
        chol = torch.linalg.cholesky(shrunk)
        px = dim * torch.cholesky_solve(x.T, chol).T  # [N, D] = P x
        logdet_p = dim * math.log(dim) - 2 * torch.log(torch.diagonal(chol)).sum().item()  # log det(D·A⁻¹)
    quad = (x * px).sum(1, keepdim=True) - 2 * x @ prec_means.T + (means * prec_means).sum(1)  # (x−μ)ᵀP(x−μ)
    comp = -0.5 * quad + 0.5 * logdet_p + math.log(1.0 / num_classes)
    return torch.logsumexp(comp, dim=1).mean().item()


@torch.no_grad()
def fit_gda_em(
    features: torch.Tensor,
    text_weights: torch.Tensor,
    *,
    alpha: float = 1.0,
    logit_scale: float = 100.0,
    max_iter: int = 20,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Unsupervised GDA: EM on a Gaussian mixture with a shared covariance.

    * Initialisation: responsibilities = zero-shot posteriors softmax(logit_scale·x·Tᵀ).
    * M-step: μ_k = Σ_n r_nk x_n / Σ_n r_nk; the shared covariance averages the
      per-class weighted covariances, S = (1/K) Σ_k Σ_n r_nk (x_n − μ_k)(…)ᵀ / Σ_n r_nk,
      turned into the KS precision with N = number of samples.
    * E-step: responsibilities = softmax of the ensemble logits
      logit_scale·x·Tᵀ + α·(x·Wᵀ + b).
    * Stops when the mixture's mean log-likelihood changes by less than
      `tol`·(1 + |LL|) or after `max_iter` iterations.

    Returns (weight, bias, info) with info = {"iterations", "converged", "log_likelihood": [...]}.
    """
    _check_features(features)
    _check_features(text_weights, "text_weights")
    if text_weights.shape[1] != features.shape[1]:
        raise ValueError(f"text_weights have dim {text_weights.shape[1]}, features {features.shape[1]}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    x = features.to(dtype)
    t = text_weights.to(dtype)
    num_samples, dim = x.shape
    num_classes = t.shape[0]
    energy = float(x.square().sum())
    zero_shot = logit_scale * x @ t.T
    resp = zero_shot.softmax(dim=1)
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        # M-step
        mass = resp.sum(0).clamp_min(torch.finfo(dtype).tiny)  # [K]
        means = (resp.T @ x) / mass.unsqueeze(1)
        row_weight = (resp / mass).sum(1)  # Σ_k r_nk / N_k
        per_class_avg = (x * row_weight.unsqueeze(1)).T @ x - means.T @ means  # Σ_k weighted cov_k
        cov = 0.5 * (per_class_avg + per_class_avg.T) / num_classes
        scatter = (num_samples - 1) * cov  # the KS estimator takes (N−1)·S
        weight, bias = _classifier_from_moments(means, scatter, num_samples, energy)
        ll = _mixture_log_likelihood(x, means, weight, scatter, energy)
        history.append(ll)
        # E-step
        resp = (zero_shot + alpha * (x @ weight.T + bias)).softmax(dim=1)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * (1.0 + abs(history[-2])):
            converged = True
            break
    info = {"iterations": len(history), "converged": converged, "log_likelihood": history}
    return weight.to(features.dtype), bias.to(features.dtype), info
