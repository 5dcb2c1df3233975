"""CraFT's refinement module and the two losses of the collaborative loop (Wang et al., ICML 2024).

R is a residual MLP on the black box's logits: Y_O = Y_I + R(Y_I), R = K→hidden→K.
The prompt's fitness and R's loss each pull towards the other module:

    L_I = CE(Y_I, y) + λ_I · KL(Y_I ‖ Y_O)      (CMA-ES fitness, Y_O fixed)
    L_O = CE(Y_O, y) + λ_O · KL(Y_O ‖ Y_I)      (R's loss, Y_I fixed)

KL(P ‖ Q) = Σ_k p_k (log p_k − log q_k), with P, Q the softmaxes of the logits; the
first argument is the distribution the expectation is taken under, the output of
the module being optimised in each loss. (Note that `torch.nn.functional.kl_div(a, b)`
is KL(b ‖ exp a), argument order reversed; `kl_divergence` below avoids that trap.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RefinementModule(nn.Module):
    """Y_O = Y_I + MLP(Y_I), the MLP K→hidden→K with a ReLU.

    The last layer starts at zero, so before training Y_O equals the black box's
    output (the collaborative loop starts from the black box, not from noise).
    """

    def __init__(self, num_classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        first, last = self.net[0], self.net[2]
        bound = first.in_features**-0.5  # nn.Linear's own uniform init, seeded
        first.weight.uniform_(-bound, bound, generator=generator)
        first.bias.uniform_(-bound, bound, generator=generator)
        last.weight.zero_()
        last.bias.zero_()

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.net(logits)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the leading rows of KL(P ‖ Q) = Σ_k p_k (log p_k − log q_k); works on [..., N, K]."""
    log_p, log_q = F.log_softmax(p_logits, dim=-1), F.log_softmax(q_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE averaged over N for [..., N, K] logits (one value per leading index)."""
    log_probs = F.log_softmax(logits, dim=-1)
    index = labels.expand(*logits.shape[:-1]).unsqueeze(-1)
    return -log_probs.gather(-1, index).squeeze(-1).mean(-1)


def prompt_fitness(y_i: torch.Tensor, y_o: torch.Tensor, labels: torch.Tensor, lambda_i: float) -> torch.Tensor:
    """L_I = CE(Y_I, y) + λ_I·KL(Y_I ‖ Y_O) per candidate: [P, N, K] logits -> [P]."""
    return _cross_entropy(y_i, labels) + lambda_i * kl_divergence(y_i, y_o)


def refinement_loss(y_o: torch.Tensor, y_i: torch.Tensor, labels: torch.Tensor, lambda_o: float) -> torch.Tensor:
    """L_O = CE(Y_O, y) + λ_O·KL(Y_O ‖ Y_I), Y_I held fixed: [N, K] -> scalar."""
    return _cross_entropy(y_o, labels) + lambda_o * kl_divergence(y_o, y_i.detach())
