"""Configuration of [`SHIPGenerator`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig


class SHIPConfig(CLIPAdaptedConfig):
    r"""SHIP's feature generator: a VAE whose decoder is CLIP's frozen text encoder.

    Args:
        encoder_hidden_dim: hidden units of the encoder E(x) (2048 in the paper's code).
        latent_dim: width of z; None means the embedding width D, as in the paper's code.
        bias_hidden_dim: hidden units of the MLP z → local bias r (4096 in the paper's code).
        n_ctx: number L of global prompt vectors (4), initialised N(0, `ctx_std`²).
        suffix: text after the class name (".").
    The labels (`id2label`) are the base classes it was trained on; `generate` takes any names.
    """

    model_type = "ship"

    def __init__(
        self,
        encoder_hidden_dim: int = 2048,
        latent_dim: int | None = None,
        bias_hidden_dim: int = 4096,
        n_ctx: int = 4,
        ctx_std: float = 0.02,
        suffix: str = ".",
        **kwargs,
    ):
        for name, value in dict(
            encoder_hidden_dim=encoder_hidden_dim, bias_hidden_dim=bias_hidden_dim, n_ctx=n_ctx
        ).items():
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.encoder_hidden_dim, self.bias_hidden_dim = int(encoder_hidden_dim), int(bias_hidden_dim)
        self.latent_dim = latent_dim
        self.n_ctx, self.ctx_std, self.suffix = int(n_ctx), float(ctx_std), suffix
        super().__init__(**kwargs)
        if self.latent_dim is None:
            self.latent_dim = self.embed_dim
