"""`SHIPGenerator`: SHIP's VAE feature generator (Wang et al., ICCV 2023) as a transformers model.

    generator = SHIPGenerator.from_clip(clip, base_class_names)
    generator.fit(base_train)                          # the VAE on the base classes' features
    features, labels = generator.generate(new_class_names, n_per_class=64, seed=0)

The checkpoint holds the encoder, the bias MLP and the global prompt vectors; the
CLIP text tower that decodes is the frozen base model's, referenced by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..clip import PromptTokens, SoftPromptTextEncoder, check_classnames
from ..configuration_utils import DEFAULT_SEED
from ..modeling_utils import register_auto
from ..training.feature_trained import FeatureTrainedCLIPModel
from .arguments import SHIPTrainingArguments
from .configuration_ship import SHIPConfig
from .functional import reparameterize, vae_loss


@dataclass
class SHIPOutput(ModelOutput):
    """loss = reconstruction_loss + kl; reconstruction: the normalised decoded features [B, D]."""

    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


class SHIPGenerator(FeatureTrainedCLIPModel):
    """E(x) → q(z|x); z → local bias r; CLIP's text tower reads "[p1+r … pL+r] {class}."."""

    config_class = SHIPConfig
    training_arguments_class = SHIPTrainingArguments
    main_input_name = "image_features"
    card_template = "ship.md"
    card_tags = ("ship", "clip", "feature-generation", "base-to-new")
    card_pipeline_tag = None

    def __init__(self, config: SHIPConfig, backbone=None):
        super().__init__(config, backbone)
        self.require_backbone("SHIP's decoder (the CLIP text tower)")
        self.text_encoder = SoftPromptTextEncoder(self.backbone)
        width, d = self.text_encoder.width, config.embed_dim
        self.encoder = nn.Sequential(nn.Linear(d, config.encoder_hidden_dim), nn.ReLU())
        self.to_mu = nn.Linear(config.encoder_hidden_dim, config.latent_dim)
        self.to_logvar = nn.Linear(config.encoder_hidden_dim, config.latent_dim)
        self.bias_mlp = nn.Sequential(
            nn.Linear(config.latent_dim, config.bias_hidden_dim), nn.ReLU(), nn.Linear(config.bias_hidden_dim, width)
        )
        self.ctx = nn.Parameter(torch.zeros(config.n_ctx, width))
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # The paper's code: N(0, 0.02) weights and zero biases; prompt vectors N(0, ctx_std²).
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            init.zeros_(module.bias)
        elif module is self:
            init.normal_(self.ctx, std=self.config.ctx_std)

    # ------------------------------------------------------------------ pieces
    def class_tokens(self, class_names) -> PromptTokens:
        """The prompts "X … X {class}{suffix}" (cached by the text encoder)."""
        return self.text_encoder.tokenize_classnames(list(class_names), self.config.n_ctx, self.config.suffix)

    def base_class_names(self) -> list[str]:
        return self.class_names()

    def decode(self, z: torch.Tensor, tokens: PromptTokens, rows: torch.Tensor) -> torch.Tensor:
        """Normalised text features of "[p+r(z_i)] {class rows[i]}." for each z_i: [B, D].
        Only each sample's own class prompt runs through the text tower."""
        bias = self.bias_mlp(z)  # [B, W]
        context = self.ctx.unsqueeze(0) + bias.unsqueeze(1)  # [B, L, W]: one prompt per sample
        rows = rows.to(tokens.input_ids.device)
        picked = PromptTokens(
            tokens.input_ids[rows],
            tokens.eos_positions[rows],
            tokens.n_ctx,
            tokens.ctx_start,
            tuple(tokens.classnames[i] for i in rows.tolist()),
        )
        return self.text_encoder(context, picked).float()

    def forward(self, image_features: torch.Tensor, labels: torch.Tensor, return_dict: bool | None = None, **kwargs):
        """The VAE pass on normalised image features [B, D] of base classes `labels` [B]."""
        x = self.get_image_features(image_features=image_features)
        h = self.encoder(x)
        mu, logvar = self.to_mu(h), self.to_logvar(h)
        recon = self.decode(reparameterize(mu, logvar), self.class_tokens(self.base_class_names()), labels)
        loss, rec, kl = vae_loss(recon, x, mu, logvar)
        out = SHIPOutput(loss=loss, reconstruction=recon, reconstruction_loss=rec, kl=kl, mu=mu, logvar=logvar)
        return out if (return_dict if return_dict is not None else self.config.return_dict) else out.to_tuple()

    @torch.no_grad()
    def generate(self, class_names, n_per_class: int, seed: int = DEFAULT_SEED, batch_size: int = 256):
        """Synthetic image features of `class_names` (any names, e.g. classes with no
        images): z ~ N(0, I) decoded through each name. Returns (features [C·n, D],
        labels [C·n] indexing `class_names`), on the CPU, unit-norm."""
        names = check_classnames(class_names)
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        was_training = self.training
        self.eval()
        tokens = self.class_tokens(names)
        labels = torch.arange(len(names)).repeat_interleave(n_per_class)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(len(labels), self.config.latent_dim, generator=g)
        chunks = [
            self.decode(z[i : i + batch_size].to(self.ctx.device), tokens, labels[i : i + batch_size]).cpu()
            for i in range(0, len(labels), batch_size)
        ]
        self.train(was_training)
        return F.normalize(torch.cat(chunks), dim=-1), labels

    def logits_from_features(self, features):
        raise TypeError(
            "SHIPGenerator generates features; it is not a classifier. Train one with hf_clipadapt.ship.fit_with_synthesized"
        )

    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            class_names=self.base_class_names(),
            n_ctx=c.n_ctx,
            latent_dim=c.latent_dim,
            shots=c.shots,
            views=c.views,
            seed=c.seed,
        )


register_auto(SHIPConfig, SHIPGenerator, image_classification=False)
