"""Pure-tensor core of transductive ZSL: scaling, losses, gradient penalty, ESZSL.

No module state lives here; `modeling_tzsl.py` wires these into the networks.
Every function is tested against a hand computation in `tests/tzsl/`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def minmax_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension (min, max) of the training features, in fp32."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"min-max scaling is fitted on non-empty [N, D] features, got {tuple(features.shape)}")
    f = features.float()
    return f.amin(0), f.amax(0)


def minmax_apply(features: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(x - min) / (max - min); constant dimensions map to 0. Not clipped: test
    features may leave [0, 1] slightly, as in the reference protocol."""
    return (features.float() - lo) / (hi - lo).clamp_min(eps)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)), summed over dimensions, averaged over the batch."""
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Conditional-VAE loss on min-max scaled features: binary cross-entropy summed
    over feature dimensions (the generator ends in a sigmoid), plus the KL term,
    both averaged over the batch."""
    bce = F.binary_cross_entropy(recon, target.clamp(0.0, 1.0), reduction="none").sum(-1).mean()
    return bce + kl_to_standard_normal(mu, logvar)


def weighted_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TF-VAEGAN's weighted L1 attribute reconstruction: each dimension of the error
    e = pred - target is weighted by w_d = e_d^2 / ||e||_2, so the loss is
    mean_batch sum_d |e_d|^3 / ||e||_2 and large per-dimension errors count more than
    in a plain L1 (akshitac8/tfvaegan, train_images.py, `WeightedL1`, lines 74-78;
    mrflogs/icassp23, train.py, lines 34-38: the normaliser is the square root of the
    summed squared error, i.e. ||e||_2, not ||e^2||_2). A row with e = 0 gives 0."""
    err = pred - target
    norm = err.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (err.pow(2) / norm * err.abs()).sum(-1).mean()


def normalize_attributes(attributes: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Class-attribute normalisation of the reference data loaders: each attribute
    (column, over all classes) to unit L2 norm, then each class (row) to unit L2 norm
    (mrflogs/icassp23, util.py, lines 46-48; the same two lines in TF-VAEGAN's
    datasets/image_util.py). A column that is zero for every class stays zero."""
    if attributes.ndim != 2:
        raise ValueError(f"attributes must be [num_classes, attribute_dim], got {tuple(attributes.shape)}")
    a = attributes / attributes.norm(dim=0, keepdim=True).clamp_min(eps)
    return a / a.norm(dim=1, keepdim=True).clamp_min(eps)


def adapt_gp_weight(
    weight: float, mean_penalty: float, upper: float = 1.05, lower: float = 1.001, factor: float = 1.1
) -> float:
    """TF-VAEGAN's adaptive gradient-penalty weight (lambda1), updated after every round of
    critic steps: `mean_penalty` is E[(||grad D|| - 1)^2] averaged over the round's critic
    steps (and over both critics in the transductive model). Above `upper` the weight is
    multiplied by `factor`, below `lower` divided by it (akshitac8/tfvaegan,
    train_images.py, lines 193-197; mrflogs/icassp23, train.py, lines 239-243, which
    divides the sum over D1 and D2 by 2 * gammaD * lambda1 * critic_iter)."""
    if mean_penalty > upper:
        return weight * factor
    if mean_penalty < lower:
        return weight / factor
    return weight


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss E[D(fake)] - E[D(real)] (minimised by the critic)."""
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty weight * E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = alpha*real + (1-alpha)*fake.

    `critic` maps features to scores; bind any conditioning (attributes) in a
    closure. `alpha` ([N, 1]) defaults to U(0, 1) per sample. The graph is kept
    (create_graph=True) so the penalty trains the critic.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return weight * (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def pseudo_class_prior(
    pseudo_attributes: torch.Tensor, class_attributes: torch.Tensor, smoothing: float = 1.0
) -> torch.Tensor:
    """A label-free estimate of the unseen-class prior.

    Each unlabelled feature's decoded attribute vector votes for the class whose
    attribute vector is most cosine-similar; counts are Laplace-smoothed and
    normalised. Uses no test label, unlike the true test prior of the reference code.
    """
    sims = F.normalize(pseudo_attributes, dim=-1) @ F.normalize(class_attributes, dim=-1).T
    counts = torch.bincount(sims.argmax(-1), minlength=class_attributes.shape[0]).float() + smoothing
    return counts / counts.sum()


def eszsl_fit(
    features: torch.Tensor, labels: torch.Tensor, attributes: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> torch.Tensor:
    """Embarrassingly simple ZSL (Romera-Paredes & Torr, 2015), closed form.

    V = (X^T X + gamma I)^-1 X^T Y S (S^T S + lam I)^-1 with X [N, D], S [C, A]
    the attributes of the training classes and Y in {-1, 1}^{N x C}.
    `labels` index the rows of `attributes`. Scores are x V s_c^T.
    """
    X, S = features.double(), attributes.double()
    Y = -torch.ones(X.shape[0], S.shape[0], dtype=torch.float64)
    Y[torch.arange(X.shape[0]), labels] = 1.0
    left = torch.linalg.solve(X.T @ X + gamma * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y @ S)
    V = torch.linalg.solve(S.T @ S + lam * torch.eye(S.shape[1], dtype=X.dtype), left.T).T
    return V.to(features.dtype)  # solved in float64, returned in the input's precision
