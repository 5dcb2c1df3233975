"""SHIP's VAE (Wang et al., "Improving Zero-Shot Generalization for CLIP with
Synthesized Prompts", ICCV 2023), as functions of tensors.

An encoder maps a CLIP image feature x to q(z|x) = N(μ, diag σ²). A small MLP turns
z into a local bias r, added to every one of L global learnable prompt vectors; the
frozen CLIP text encoder reads "[p1+r … pL+r] {class}." and its normalised output is
the reconstruction x̃. The loss is

    L = mean_batch ||x̃ − x||²  +  mean_batch KL(N(μ, σ²) || N(0, I)),
    KL = −½ Σ_j (1 + log σ²_j − μ²_j − σ²_j).

For a class that has only a name, z ~ N(0, I) decodes, through its name, into a
synthetic image feature.
"""

from __future__ import annotations

import torch


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag exp(logvar)) || N(0, I)) per sample, summed over dimensions: [B]."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)


def vae_loss(reconstruction: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    """(total, reconstruction term, KL term): batch means of the summed squared error
    and of the KL, weight 1 (mrflogs/SHIP `main_coop_vae.py` L279-282)."""
    rec = (reconstruction - target).pow(2).sum(dim=-1).mean()
    kl = kl_to_standard_normal(mu, logvar).mean()
    return rec + kl, rec, kl


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) (drawn from `generator` when given)."""
    eps = (
        torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        if generator
        else torch.randn_like(mu)
    )
    return mu + torch.exp(0.5 * logvar) * eps
