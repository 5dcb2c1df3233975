"""The networks of TZSL's VAE-GAN (`TZSLModel` in `modeling_tzsl`): encoder, generator,
critics, attribute decoder and feedback module. Kept in their own module so the model's
module stays within the size limit; `modeling_tzsl` imports them back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_tzsl import TZSLConfig


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, d_out))


class TZSLEncoder(nn.Module):
    """E(x, a) -> (mu, logvar) of the latent code: [x; a] -> hidden -> 2 * latent (both
    LeakyReLU 0.2) -> mu, logvar (akshitac8/tfvaegan, networks/TFVAEGAN_model.py, `Encoder`,
    lines 16-37; mrflogs/icassp23, model.py, lines 5-25: `fc1`, then the extra `fc3`)."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(cfg.feature_dim + cfg.attribute_dim, cfg.hidden_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden_dim, 2 * cfg.latent_dim),
            nn.LeakyReLU(0.2),
        )
        self.mu = nn.Linear(2 * cfg.latent_dim, cfg.latent_dim)
        self.logvar = nn.Linear(2 * cfg.latent_dim, cfg.latent_dim)

    def forward(self, x, a):
        h = self.body(torch.cat([x, a], -1))
        return self.mu(h), self.logvar(h)


class TZSLGenerator(nn.Module):
    """G(z, a) -> sigmoid features; an optional feedback vector is added to its hidden layer."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.latent_dim + cfg.attribute_dim, cfg.hidden_dim)
        self.fc2 = nn.Linear(cfg.hidden_dim, cfg.feature_dim)

    def forward(self, z, a, feedback: torch.Tensor | None = None):
        h = F.leaky_relu(self.fc1(torch.cat([z, a], -1)), 0.2)
        if feedback is not None:
            h = h + feedback
        return torch.sigmoid(self.fc2(h))


class TZSLCritic(nn.Module):
    """WGAN critic D(x[, a]); unconditional when `attribute_dim` is 0."""

    def __init__(self, feature_dim: int, attribute_dim: int, hidden_dim: int):
        super().__init__()
        self.conditional = attribute_dim > 0
        self.net = _mlp(feature_dim + attribute_dim, hidden_dim, 1)

    def forward(self, x, a=None):
        return self.net(torch.cat([x, a], -1) if self.conditional else x).squeeze(-1)


class TZSLAttributeDecoder(nn.Module):
    """Dec(x) -> (L2-normalised attributes, hidden activations)."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.feature_dim, cfg.decoder_hidden_dim)
        self.fc2 = nn.Linear(cfg.decoder_hidden_dim, cfg.attribute_dim)

    def forward(self, x):
        h = F.leaky_relu(self.fc1(x), 0.2)
        return F.normalize(self.fc2(h), dim=-1), h


class TZSLFeedback(nn.Module):
    """F(h) -> feedback added to the generator's hidden layer: two Linear layers, each followed
    by LeakyReLU 0.2, the output too (mrflogs/icassp23, model.py, `Feedback`, lines 105-115;
    akshitac8/tfvaegan, networks/TFVAEGAN_model.py, `Feedback`)."""

    def __init__(self, cfg: TZSLConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.decoder_hidden_dim, cfg.hidden_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden_dim, cfg.hidden_dim),
            nn.LeakyReLU(0.2),
        )

    def forward(self, hidden):
        return self.net(hidden)
