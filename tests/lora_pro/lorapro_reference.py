"""An independent float64 re-derivation of LoRA-Pro, written from the paper's
equations with explicit m×m / n×n projectors and scipy's Sylvester solver.
Slow and obvious on purpose: it is the yardstick for the optimizer."""

import numpy as np
import scipy.linalg
import torch

D = torch.float64


def closed_form(A, B, gA, gB, s, solve_x=True):
    """(ĝA, ĝB) from the paper, with the official B = 0 special case."""
    AAt_inv = torch.linalg.inv(A @ A.T)
    if torch.count_nonzero(B) == 0:
        return gA.clone(), gB @ AAt_inv / s**2
    BtB = B.T @ B
    BtB_inv = torch.linalg.inv(BtB)
    P_B = B @ BtB_inv @ B.T
    I = torch.eye(B.shape[0], dtype=D)
    X = torch.zeros(A.shape[0], A.shape[0], dtype=D)
    if solve_x:
        C = -(1 / s**2) * BtB_inv @ gA @ A.T
        X = torch.from_numpy(scipy.linalg.solve_sylvester(BtB.numpy(), (A @ A.T).numpy(), C.numpy()))
    return BtB_inv @ gA / s**2 + X @ A, (I - P_B) @ gB @ AAt_inv / s**2 - B @ X


class RefLoraProAdamW:
    """pairs: list of (A_param, B_param, s); plain params go to torch.optim.AdamW."""

    def __init__(self, pairs, plain, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, mode="full"):
        self.pairs, self.lr, self.betas, self.eps, self.wd, self.mode = pairs, lr, betas, eps, weight_decay, mode
        self.state = {}
        self.plain = torch.optim.AdamW(plain, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay) if plain else None

    def _adam(self, key, g):
        b1, b2 = self.betas
        st = self.state.setdefault(key, {"t": 0, "m": torch.zeros_like(g), "v": torch.zeros_like(g)})
        st["t"] += 1
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        m_hat = st["m"] / (1 - b1 ** st["t"])
        v_hat = st["v"] / (1 - b2 ** st["t"])
        return m_hat / (v_hat.sqrt() + self.eps)

    @torch.no_grad()
    def step(self):
        for i, (Ap, Bp, s) in enumerate(self.pairs):
            A, B = Ap.detach().to(D), Bp.detach().to(D)
            gA, gB = Ap.grad.to(D), Bp.grad.to(D)
            if self.mode == "full":
                a0, b0 = closed_form(A, B, gA, gB, s, solve_x=False)
                g_tilde = s * (B @ a0 + b0 @ A)
                direction = self._adam(i, g_tilde)
                dA, dB = closed_form(A, B, s * B.T @ direction, s * direction @ A.T, s)
            else:
                hA, hB = closed_form(A, B, gA, gB, s)
                dA, dB = self._adam((i, "A"), hA), self._adam((i, "B"), hB)
            Ap.copy_(A * (1 - self.lr * self.wd) - self.lr * dA)
            Bp.copy_(B * (1 - self.lr * self.wd) - self.lr * dB)
        if self.plain is not None:
            self.plain.step()

    def zero_grad(self):
        for Ap, Bp, _ in self.pairs:
            Ap.grad = Bp.grad = None
        if self.plain is not None:
            self.plain.zero_grad()


def lora_pairs_by_hand(model, alpha, r, rslora=False):
    """Pairs found independently of the package: by attribute, s from alpha and r."""
    s = alpha / (np.sqrt(r) if rslora else r)
    pairs = []
    for module in model.modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            pairs.append((module.lora_A["default"].weight, module.lora_B["default"].weight, s))
    ids = {id(t) for p in pairs for t in p[:2]}
    plain = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return pairs, plain
