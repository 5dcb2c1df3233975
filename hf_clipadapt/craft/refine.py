"""CraFT's refinement module and the two losses of the collaborative loop (Wang et al., ICML 2024).

R is a residual MLP on the black box's logits: Y_O = Y_I + R(Y_I), R = K→hidden→K.
The prompt's fitness and R's loss each pull towards the other module, with the KL
directions of the authors' code (mrflogs/CraFT main_craft.py): its helper
`ce_loss(input, target)` (lines 236-240) is `F.kl_div(log_softmax(input),
softmax(target), reduction="batchmean")` = KL(P_target ‖ P_input), and

    L_I = CE(Y_I, y) + w · KL(P_O ‖ P_I)    fitness, Y_O fixed  (line 153-154: ce_loss(logits, update_logits))
    L_O = CE(Y_O, y) + w · KL(P_I ‖ P_O)    R's loss, Y_I fixed (lines 218-220: ce_loss(update_logits, logits))

so in each loss the expectation is taken under the *other* module's distribution, the
one held fixed. KL(P ‖ Q) = Σ_k p_k (log p_k − log q_k), averaged over the rows
("batchmean"). (`torch.nn.functional.kl_div(a, b)` is KL(b ‖ exp a), argument order
reversed; `kl_divergence` below takes (P, Q) in the order of the formula.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RefinementModule(nn.Module):
    """Y_O = Y_I + MLP(Y_I), the MLP K→hidden→K with a ReLU.

    By default the last layer starts at zero, so an untrained model is the black box
    itself. The official loop starts R from PyTorch's default init of both layers
    (mrflogs/CraFT main_craft.py lines 185-189): `reset_parameters(zero_last=False)`.
    """

    def __init__(self, num_classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None, zero_last: bool = True) -> None:
        for layer in (self.net[0], self.net[2]):
            bound = layer.in_features**-0.5  # nn.Linear's own uniform init (weights and bias), seeded
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        if zero_last:
            self.net[2].weight.zero_()
            self.net[2].bias.zero_()

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


def prompt_fitness(y_i: torch.Tensor, y_o: torch.Tensor, labels: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """L_I = CE(Y_I, y) + w·KL(P_O ‖ P_I) per candidate: [P, N, K] logits -> [P]
    (mrflogs/CraFT main_craft.py lines 152-154, Y_O = Y_I + R(Y_I) held fixed)."""
    return _cross_entropy(y_i, labels) + kl_weight * kl_divergence(y_o.detach(), y_i)


def refinement_loss(y_o: torch.Tensor, y_i: torch.Tensor, labels: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """L_O = CE(Y_O, y) + w·KL(P_I ‖ P_O), Y_I held fixed: [N, K] -> scalar
    (mrflogs/CraFT main_craft.py lines 217-220; the loop passes w = 0 once the KL is switched off)."""
    return _cross_entropy(y_o, labels) + kl_weight * kl_divergence(y_i.detach(), y_o)
