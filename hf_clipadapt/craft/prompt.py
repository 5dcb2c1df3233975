"""CraFT's prompt module: the context is p0 + A·z (Wang et al., ICML 2024).

p0 is the owner's token embedding of the initial phrase ("a photo of a", n tokens
of width W). A is a fixed random Gaussian projection from a low-dimensional z (d0 =
512) to the n·W context, as in black-box tuning (Sun et al., ICML 2022): CMA-ES
searches the d0-dim z, not the n·W-dim context. A's entries are N(0, std²) as in
mrflogs/CraFT main_craft.py lines 83-86 (a bias-free Linear's weight); the official std is
the config's (0.2, or 1 on dtd and eurosat); the library's default is 0.02 (see `CraFTConfig`). A is regenerated
from its seed whenever it is needed and never stored, so a saved prompt is z alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def random_projection(seed: int, rows: int, dim: int, std: float) -> np.ndarray:
    """[rows, dim] A with N(0, std²) entries, the same for the same (seed, rows, dim, std) on any machine
    (NumPy's PCG64 stream, generated in float64 and rounded)."""
    return (np.random.default_rng(seed).standard_normal((rows, dim)) * std).astype(np.float32)


class PromptModule(nn.Module):
    """Holds z (the CMA-ES mean, a saved buffer); builds contexts p0 + A·z for the black box.

    Args:
        n_ctx, width: the shape [n, W] of p0 (the black box's token embeddings).
        dim: d0, the dimension of z.
        seed, std: regenerate A.
    """

    def __init__(self, n_ctx: int, width: int, dim: int = 512, seed: int = 0, std: float = 0.02):
        super().__init__()
        self.n_ctx, self.width, self.dim, self.seed, self.std = n_ctx, width, dim, seed, std
        self.register_buffer("z", torch.zeros(dim))
        self.p0: np.ndarray | None = None  # the owner's embedding of the initial phrase, fetched, not saved
        self._projection: np.ndarray | None = None

    @property
    def projection(self) -> np.ndarray:
        if self._projection is None:
            self._projection = random_projection(self.seed, self.n_ctx * self.width, self.dim, self.std)
        return self._projection

    def attach(self, black_box, init_text: str) -> None:
        """Fetch p0 = the black box's embedding of `init_text`; it must be [n_ctx, width]."""
        p0 = black_box.context_embeddings(init_text)
        if p0.shape != (self.n_ctx, self.width):
            raise ValueError(
                f"the black box embeds {init_text!r} as {p0.shape[0]} tokens of width {p0.shape[1]}, but this prompt "
                f"was built for {self.n_ctx} tokens of width {self.width}: it belongs to another model. Connect the "
                "black box it was trained against."
            )
        self.p0 = p0

    def contexts(self, z) -> np.ndarray:
        """[P, d0] (or [d0]) z -> [P, n, W] (or [n, W]) contexts p0 + A·z, float32."""
        if self.p0 is None:
            raise ValueError("the prompt has no p0 yet: call attach(black_box, init_text) first")
        z = np.asarray(z.detach().cpu().numpy() if hasattr(z, "detach") else z, dtype=np.float32)
        single = z.ndim == 1
        z = z[None] if single else z
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must be [{self.dim}] or [P, {self.dim}], got {z.shape}")
        out = self.p0[None] + (z @ self.projection.T).reshape(len(z), self.n_ctx, self.width)
        return out[0] if single else out

    def context(self) -> np.ndarray:
        """The learned context p0 + A·z (z the saved mean)."""
        return self.contexts(self.z)

    def extra_repr(self) -> str:
        return f"n_ctx={self.n_ctx}, width={self.width}, dim={self.dim}, seed={self.seed}, std={self.std}"
