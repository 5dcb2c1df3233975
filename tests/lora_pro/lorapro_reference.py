"""An independent float64 re-derivation of LoRA-Pro, written from the paper's
equations with explicit m×m / n×n projectors and scipy's Sylvester solver.
Slow and obvious on purpose: it is the yardstick for the optimizer."""

import numpy as np
import scipy.linalg
import torch

D = torch.float64


def closed_form(A, B, gA, gB, s, solve_x=True, b_damping=0.0):
    """(ĝA, ĝB) from the paper; at B = 0, ĝA = gA (= 0) and ĝB = gB·(AAᵀ)⁻¹/s², the numbers the
    official general branch gives there (its own B = 0 branch never runs). b_damping > 0 uses
    K = (BᵀB + λ·I)⁻¹, λ = b_damping·tr(AAᵀ)/r, in place of (BᵀB)⁻¹; X then minimises
    ‖ĝA − gA‖² + ‖ĝB − gB‖² by explicit least squares over vec(X), not by the Sylvester
    equation that the package derives from it."""
    r = A.shape[0]
    AAt_inv = torch.linalg.inv(A @ A.T)
    if torch.count_nonzero(B) == 0 and b_damping == 0:
        return gA.clone(), gB @ AAt_inv / s**2
    lam = b_damping * torch.trace(A @ A.T) / r
    K = torch.linalg.inv(B.T @ B + lam * torch.eye(r, dtype=D))
    P = B @ K @ B.T
    I = torch.eye(B.shape[0], dtype=D)
    a0, b0 = K @ gA / s**2, (I - P) @ gB @ AAt_inv / s**2
    X = torch.zeros(r, r, dtype=D)
    if solve_x and b_damping == 0:
        C = -(1 / s**2) * K @ gA @ A.T
        X = torch.from_numpy(scipy.linalg.solve_sylvester((B.T @ B).numpy(), (A @ A.T).numpy(), C.numpy()))
    elif solve_x:
        X = _least_squares_x(A, B, a0 - gA, b0 - gB)
    return a0 + X @ A, b0 - B @ X


def _least_squares_x(A, B, resA, resB):
    """argmin_X ‖resA + X·A‖² + ‖resB − B·X‖², with one design column per entry of X."""
    r = A.shape[0]
    cols = []
    for k in range(r * r):
        E = torch.zeros(r * r, dtype=D)
        E[k] = 1.0
        E = E.reshape(r, r)
        cols.append(torch.cat([(E @ A).reshape(-1), (-B @ E).reshape(-1)]))
    design = torch.stack(cols, 1)
    target = -torch.cat([resA.reshape(-1), resB.reshape(-1)])
    return torch.linalg.lstsq(design, target).solution.reshape(r, r)


class RefLoraProAdamW:
    """pairs: list of (A_param, B_param, s); plain params go to torch.optim.AdamW."""

    def __init__(
        self,
        pairs,
        plain,
        lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        mode="full",
        b_damping=None,
        factored=False,
    ):
        self.pairs, self.lr, self.betas, self.eps, self.wd, self.mode = pairs, lr, betas, eps, weight_decay, mode
        self.b_damping = (1.0 if mode == "efficient" else 0.0) if b_damping is None else b_damping
        self.factored = factored
        self.state = {}
        self.plain = (
            torch.optim.AdamW(plain, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay) if plain else None
        )

    def _adam(self, key, g):
        b1, b2 = self.betas
        st = self.state.setdefault(key, {"t": 0, "m": torch.zeros_like(g), "v": torch.zeros_like(g)})
        st["t"] += 1
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        m_hat = st["m"] / (1 - b1 ** st["t"])
        v_hat = st["v"] / (1 - b2 ** st["t"])
        return m_hat / (v_hat.sqrt() + self.eps)

    def _adafactor(self, key, g):
        """Adam with v replaced by Adafactor's rank-1 estimate R·Cᵀ/mean(R), on the whole g."""
        b1, b2 = self.betas
        st = self.state.setdefault(
            key,
            {
                "t": 0,
                "m": torch.zeros_like(g),
                "R": torch.zeros(g.shape[0], dtype=D),
                "C": torch.zeros(g.shape[1], dtype=D),
            },
        )
        st["t"] += 1
        sq = g * g + 1e-30
        st["R"] = b2 * st["R"] + (1 - b2) * sq.mean(1)
        st["C"] = b2 * st["C"] + (1 - b2) * sq.mean(0)
        v_hat = torch.outer(st["R"], st["C"]) / st["R"].mean() / (1 - b2 ** st["t"])
        st["m"] = b1 * st["m"] + (1 - b1) * g
        m_hat = st["m"] / (1 - b1 ** st["t"]) if b1 > 0 else g
        return m_hat / (v_hat.sqrt() + self.eps)

    @torch.no_grad()
    def step(self):
        for i, (Ap, Bp, s) in enumerate(self.pairs):
            A, B = Ap.detach().to(D), Bp.detach().to(D)
            gA, gB = Ap.grad.to(D), Bp.grad.to(D)
            bd = self.b_damping
            if self.mode == "full":
                a0, b0 = closed_form(A, B, gA, gB, s, solve_x=False, b_damping=bd)
                g_tilde = s * (B @ a0 + b0 @ A)
                direction = self._adafactor(i, g_tilde) if self.factored else self._adam(i, g_tilde)
                dA, dB = closed_form(A, B, s * B.T @ direction, s * direction @ A.T, s, b_damping=bd)
            else:
                hA, hB = closed_form(A, B, gA, gB, s, b_damping=bd)
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
