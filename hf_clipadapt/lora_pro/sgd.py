"""LoraProSGD: SGD with LoRA-Pro's closed-form gradient adjustment (the paper's
Algorithm 1), and the argument checks LoRA-Pro's optimizers share."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional
from .base import LoraProBase
from .sharded import local

__all__ = ["LoraProSGD", "check_common"]


def check_common(lr: float, eps: float | None = None, betas=None, weight_decay: float = 0.0, momentum=None) -> None:
    if not (isinstance(lr, (int, float, Tensor)) and float(lr) >= 0):
        raise ValueError(f"lr must be ≥ 0, got {lr!r}.")
    if eps is not None and not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got {eps!r}.")
    if betas is not None:
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}.")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay!r}.")
    if momentum is not None and not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")


class LoraProSGD(LoraProBase):
    """SGD with LoRA-Pro's closed-form gradient adjustment (the paper's Algorithm 1).

    A and B step along (ĝA, ĝB) (with heavy-ball momentum on them if momentum > 0);
    every other trainable parameter takes a plain SGD step with the same momentum."""

    def __init__(self, model: nn.Module, lr: float = 1e-3, momentum: float = 0.0, damping: float = 1e-8):
        check_common(lr, momentum=momentum)
        super().__init__(model, dict(lr=lr, momentum=momentum), damping)

    def _fresh_state(self, p: Tensor) -> dict:
        return {"momentum_buffer": torch.zeros_like(p, dtype=functional.compute_dtype(p.dtype))}

    def _update(self) -> None:
        lora, plain = self._lora_group(), self._plain_group()
        for g in self._shape_groups():
            coef = functional.projection_coefficients(*g.stats(), g.s, self.damping, solve_x=True)
            gA_hat, gB_hat = functional.apply_projection(coef, g.A, g.B, g.gA, g.gB)
            for params, upd in (([p.A for p in g.pairs], g.own_rows(gA_hat)), ([p.B for p in g.pairs], gB_hat)):
                for p, d in zip(params, upd.unbind(0)):
                    self._sgd_(p, d, lora)
        for p in plain["params"]:
            if p.grad is not None:
                self._sgd_(p, local(p.grad), plain)

    def _sgd_(self, param: Tensor, d: Tensor, group: dict) -> None:
        """One SGD step of `param` (this rank's part) along `d`."""
        p = local(param)
        d = d.to(functional.compute_dtype(p.dtype)).view(p.shape)  # conv factors: back to (r, in, k...)
        if group["momentum"]:
            st = self.state[param]
            if not st:
                st.update(self._fresh_state(param))
            d = local(st["momentum_buffer"]).mul_(group["momentum"]).add_(d)
        if p.dtype == d.dtype:
            p.add_(d, alpha=-float(group["lr"]))
        else:
            p.copy_(p.to(d.dtype).add_(d, alpha=-float(group["lr"])))
