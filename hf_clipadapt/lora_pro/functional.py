"""Pure-tensor core of LoRA-Pro: Wang et al., "LoRA-Pro: Are Low-Rank Adapters
Properly Optimized?", ICLR 2025: its closed-form
equivalent-gradient projection and the Sylvester choice of X.

Layout, for one adapted matrix W = W0 + s·B·A:  A is r×n, B is m×r, the full
gradient g = dL/dW is m×n and LoRA's own gradients are gA = s·Bᵀg, gB = s·g·Aᵀ.
Every function also accepts a leading batch of pairs (A: (..., r, n), s: float
or a tensor of shape (...)), which is how the optimizer batches layers.

Nothing here builds an m×m or n×n matrix: every projection is applied through
r×r factors, e.g. (I − P_B)·Y = Y − B·((BᵀB)⁻¹·(Bᵀ·Y)).

Step 0 of PEFT's default init has B = 0, so BᵀB = 0 and the closed form's
(BᵀB)⁻¹ only exists through the damping. We special-case it per pair (detected
on tr(BᵀB) = 0): ĝA = gA, which is 0 (gA = s·Bᵀg), X = 0 and ĝB = gB·(AAᵀ + δI)⁻¹/s².
The official code (mrflogs/LoRA-Pro, the patched DeepSpeed
`deepspeed/runtime/zero/stage_1_and_2.py`) has a `global_step == 0` branch for it
(lines 1845-1849 and 1884-1886), but that branch never runs: `step()` increments
`global_step` before calling the adjustment (line 1935), so the first step takes the
general branch. There, pinv(BᵀB + δI) = I/δ multiplies gA = 0, the projector
B·(BᵀB + δI)⁻¹·Bᵀ is 0, and the Sylvester equation 0·X + X·AAᵀ = 0 gives X = 0: the
same ĝA = 0 and ĝB = gB·(AAᵀ + δI)⁻¹/s² as our special case, up to rounding.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "compute_dtype",
    "equivalent_gradient",
    "lorapro_project",
    "projection_coefficients",
    "apply_projection",
    "solve_sylvester_spd",
    "b_damping_value",
    "ProjectionCoefficients",
]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype LoRA-Pro's math runs in: float64 stays float64, all else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_batch_scale(s: float | Tensor, like: Tensor) -> Tensor:
    """`s` as a tensor broadcastable against (..., r, r) matrices."""
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    return s.reshape(s.shape + (1, 1))


def equivalent_gradient(A: Tensor, B: Tensor, gA: Tensor, gB: Tensor, s: float | Tensor) -> Tensor:
    """g̃ = s·(B·gA + gB·A): the full-weight gradient that an update (gA, gB) of
    the factors amounts to, to first order. One GEMM over [B, gB] @ [gA; A]."""
    _check_pair(A, B, gA, gB)
    left = torch.cat([B, gB], dim=-1)  # (..., m, 2r)
    right = torch.cat([gA, A], dim=-2)  # (..., 2r, n)
    return _as_batch_scale(s, left) * (left @ right)


def _check_pair(A: Tensor, B: Tensor, gA: Tensor, gB: Tensor) -> None:
    if A.dim() < 2 or B.dim() < 2:
        raise ValueError(
            f"LoRA-Pro expects 2-D factors A (r×n) and B (m×r), got A{tuple(A.shape)} and B{tuple(B.shape)}; "
            "flatten convolution kernels or use a Linear/Embedding adapter."
        )
    r = A.shape[-2]
    if r == 0:
        raise ValueError("LoRA-Pro needs rank r ≥ 1, got an adapter with r = 0; give the adapter a positive rank.")
    if B.shape[-1] != r:
        raise ValueError(
            f"A is {tuple(A.shape)} (r×n) but B is {tuple(B.shape)} (m×r): their ranks differ. "
            "Pass A = lora_A.weight and B = lora_B.weight of the same adapter."
        )
    if gA.shape != A.shape or gB.shape != B.shape:
        raise ValueError(
            f"gradient shapes gA{tuple(gA.shape)}, gB{tuple(gB.shape)} do not match "
            f"A{tuple(A.shape)}, B{tuple(B.shape)}."
        )


def _spd_eigh(M: Tensor) -> tuple[Tensor, Tensor]:
    """eigh of a symmetric PSD r×r (batch); symmetrised first and eigenvalues
    clamped at 0, since round-off can leave BᵀB a hair non-symmetric/negative."""
    evals, evecs = torch.linalg.eigh(0.5 * (M + M.mT))
    return evals.clamp_min(0), evecs


def _sylvester_from_eigh(lam: Tensor, U: Tensor, mu: Tensor, V: Tensor, C: Tensor) -> Tensor:
    """X with P·X + X·Q = C, P = U·diag(λ)·Uᵀ, Q = V·diag(μ)·Vᵀ.
    In the eigenbases the equation is diagonal: (λ_i + μ_j)·X̃_ij = C̃_ij."""
    Ct = U.mT @ C @ V
    return U @ (Ct / (lam.unsqueeze(-1) + mu.unsqueeze(-2))) @ V.mT


def solve_sylvester_spd(P: Tensor, Q: Tensor, C: Tensor) -> Tensor:
    """Solve P·X + X·Q = C for symmetric positive-definite r×r P and Q (batched).

    Exact for SPD inputs, with two `eigh` calls; P + Q must be non-singular in the
    sense λ_i(P) + μ_j(Q) > 0 for every pair (true when either is definite)."""
    if P.shape[-1] != P.shape[-2] or Q.shape[-1] != Q.shape[-2]:
        raise ValueError(f"P and Q must be square, got {tuple(P.shape)} and {tuple(Q.shape)}.")
    if C.shape[-2:] != (P.shape[-1], Q.shape[-1]):
        raise ValueError(f"C must be {P.shape[-1]}×{Q.shape[-1]} to match P and Q, got {tuple(C.shape[-2:])}.")
    lam, U = _spd_eigh(P)
    mu, V = _spd_eigh(Q)
    if bool(((lam.unsqueeze(-1) + mu.unsqueeze(-2)) <= 0).any()):
        raise ValueError("P and Q share a zero eigenvalue, so P·X + X·Q = C is singular; add damping to P or Q.")
    return _sylvester_from_eigh(lam, U, mu, V, C)


class ProjectionCoefficients(NamedTuple):
    """r×r matrices that express the closed form as two skinny GEMMs per factor:
    ĝA = KA·gA + X·A   and   ĝB = gB·KB1 + B·KB2."""

    KA: Tensor
    X: Tensor
    KB1: Tensor
    KB2: Tensor


def b_damping_value(AAt: Tensor, b_damping: float | Tensor) -> Tensor:
    """The absolute damping λ_B = b_damping · tr(AAᵀ)/r added to BᵀB (shape (..., 1, 1)).

    tr(AAᵀ)/r is the mean eigenvalue BᵀB would have if the factorisation were balanced
    (‖B‖_F = ‖A‖_F; W = s·B·A is unchanged by B → cB, A → A/c). So λ_B is small next to
    BᵀB once B has grown to A's scale and dominates while B ≪ A, as after PEFT's B = 0
    start, where the undamped (BᵀB)⁻¹ blows ĝA up by ~1/‖B‖²."""
    r = AAt.shape[-1]
    tr = AAt.diagonal(dim1=-2, dim2=-1).sum(-1)
    lam = torch.as_tensor(b_damping, dtype=AAt.dtype, device=AAt.device) * tr / r
    return lam.reshape(lam.shape + (1, 1))


def projection_coefficients(
    BtB: Tensor,
    AAt: Tensor,
    gAAt: Tensor,
    BtgB: Tensor,
    s: float | Tensor,
    damping: float = 1e-8,
    solve_x: bool = True,
    b_damping: float = 0.0,
) -> ProjectionCoefficients:
    """The closed form's r×r coefficients from the four r×r products
    BᵀB, AAᵀ, gA·Aᵀ and Bᵀ·gB (batched over leading dims).

    With K = (BᵀB + (δ + λ_B)·I)⁻¹ and M = (AAᵀ + δI)⁻¹, λ_B = b_damping·tr(AAᵀ)/r:
      ĝA = (1/s²)·K·gA + X·A
      ĝB = (1/s²)·[I − B·K·Bᵀ]·gB·M − B·X
         = gB·(M/s²) − B·((1/s²)·K·(BᵀgB)·M + X)
    so that s·(B·ĝA + ĝB·A) = P·g + (I − P)·g·P_A with P = B·K·Bᵀ (P = P_B for λ_B = 0;
    λ_B > 0 shrinks P along the directions B has barely learnt, as ridge regression does).
    X minimises ‖ĝA − gA‖² + ‖ĝB − gB‖²: it solves
      (BᵀB + δI)·X + X·(AAᵀ + δI) = −(1/s²)·K·gA·Aᵀ + (λ_B/s²)·K·BᵀgB·M
    (solve_x=False: X = 0). The last term vanishes for λ_B = 0, leaving the paper's equation.
    """
    if damping < 0:
        raise ValueError(f"damping must be ≥ 0, got {damping}.")
    if not b_damping >= 0:
        raise ValueError(f"b_damping must be ≥ 0, got {b_damping}.")
    r = BtB.shape[-1]
    s = _as_batch_scale(s, BtB)
    inv_s2 = 1.0 / (s * s)
    lam, U = _spd_eigh(BtB)
    mu, V = _spd_eigh(AAt)
    lam_x, mu = lam + damping, mu + damping  # the Sylvester operator's spectrum
    lam_b = b_damping_value(AAt, b_damping).squeeze(-1) if b_damping else 0.0  # (..., 1)
    lam_k = lam_x + lam_b  # K's spectrum
    if damping == 0 and bool((mu <= 0).any()):
        raise ValueError("AAᵀ is singular (A has rank < r) and damping = 0; use damping > 0, e.g. 1e-8.")
    # B = 0 (PEFT's init) is detected per pair on the trace; see the module docstring.
    b_zero = (BtB.diagonal(dim1=-2, dim2=-1).sum(-1) == 0).reshape(BtB.shape[:-2] + (1, 1))
    lam_safe = torch.where(lam_k > 0, lam_k, torch.ones_like(lam_k))  # only matters for B = 0 with no damping
    K = (U / lam_safe.unsqueeze(-2)) @ U.mT
    M = (V / mu.unsqueeze(-2)) @ V.mT
    if solve_x:
        C = -inv_s2 * (K @ gAAt)
        if b_damping:  # Bᵀ·ĝB no longer vanishes when K is damped; see the docstring
            C = C + inv_s2 * lam_b.unsqueeze(-1) * (K @ BtgB @ M)
        # μ_j > 0 (checked above, or ≥ δ), so λ_i + μ_j > 0 even where BᵀB is singular.
        X = _sylvester_from_eigh(lam_x, U, mu, V, C)
    else:
        X = torch.zeros_like(BtB)
    eye = torch.eye(r, dtype=BtB.dtype, device=BtB.device).expand_as(BtB)
    zero = torch.zeros_like(BtB)
    KA = torch.where(b_zero, eye, inv_s2 * K)
    X = torch.where(b_zero, zero, X)
    KB1 = inv_s2 * M
    KB2 = torch.where(b_zero, zero, -(inv_s2 * (K @ BtgB @ M) + X))
    return ProjectionCoefficients(KA, X, KB1, KB2)


def apply_projection(
    coef: ProjectionCoefficients, A: Tensor, B: Tensor, gA: Tensor, gB: Tensor
) -> tuple[Tensor, Tensor]:
    """(ĝA, ĝB) = (KA·gA + X·A, gB·KB1 + B·KB2), each one GEMM over concatenated factors."""
    gA_hat = torch.cat([coef.KA, coef.X], dim=-1) @ torch.cat([gA, A], dim=-2)
    gB_hat = torch.cat([gB, B], dim=-1) @ torch.cat([coef.KB1, coef.KB2], dim=-2)
    return gA_hat, gB_hat


def lorapro_project(
    A: Tensor,
    B: Tensor,
    gA: Tensor,
    gB: Tensor,
    s: float | Tensor,
    damping: float = 1e-8,
    X: Literal["sylvester"] | Tensor | None = "sylvester",
    b_damping: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """LoRA-Pro's closed form: the (ĝA, ĝB) whose equivalent gradient is closest
    to the full gradient g, i.e. s·(B·ĝA + ĝB·A) = P_B·g + (I − P_B)·g·P_A.
    b_damping > 0 replaces P_B by B·(BᵀB + λ_B·I)⁻¹·Bᵀ, λ_B = b_damping·tr(AAᵀ)/r
    (see `projection_coefficients`).

    X chooses among the equally good solutions: "sylvester" (default) takes the
    one closest to (gA, gB); None means X = 0; a tensor (r×r) is used as given.
    Math runs in float32 (float64 for float64 inputs); results have A's dtype."""
    _check_pair(A, B, gA, gB)
    out_dtype = A.dtype
    dt = compute_dtype(A.dtype)
    A, B, gA, gB = (t.to(dt) for t in (A, B, gA, gB))
    if isinstance(s, Tensor):
        s = s.to(dt)
    coef = projection_coefficients(
        B.mT @ B, A @ A.mT, gA @ A.mT, B.mT @ gB, s, damping, solve_x=isinstance(X, str), b_damping=b_damping
    )
    if isinstance(X, str):
        if X != "sylvester":
            raise ValueError(f'X must be "sylvester", None or an r×r tensor, got {X!r}.')
    elif X is not None:
        if X.shape[-2:] != coef.X.shape[-2:]:
            raise ValueError(f"X must be r×r = {tuple(coef.X.shape[-2:])}, got {tuple(X.shape)}.")
        X = X.to(dt).expand_as(coef.X)
        # X enters ĝA as +X·A and ĝB as −B·X, on top of the X = 0 coefficients.
        coef = ProjectionCoefficients(coef.KA, X, coef.KB1, coef.KB2 - X)
    gA_hat, gB_hat = apply_projection(coef, A, B, gA, gB)
    return gA_hat.to(out_dtype), gB_hat.to(out_dtype)
