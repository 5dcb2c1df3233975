"""The memory option of LoRA-Pro's full mode: Adam on the m×n equivalent gradient g̃
with a factored second moment, as in Adafactor (Shazeer & Stern, "Adafactor:
Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018), and a first moment
that is kept in a low-precision dtype or dropped (β1 = 0).

Per adapted matrix, exact full mode keeps two m×n float32 moments (8·m·n bytes).
This keeps a row vector R (m) and a column vector C (n) of running means of g̃²,
and estimates v ≈ R·Cᵀ / mean(R), the rank-1 fit Adafactor uses; plus, when
β1 > 0, one m×n first moment (2·m·n bytes in bfloat16). No update clipping or
relative step size: apart from v, the step is Adam's, so learning rates carry over.

The pass over g̃ runs in row blocks and never holds an m×n temporary. The column
means need all rows of this step's g̃ before any direction is formed, so g̃ is
computed twice per block (one skinny GEMM, inner size 2r, each time). Under FSDP2
(sharded.py) a rank keeps its rows of R and of the first moment; the column sums of g̃²
and the sum of R are all-reduced (n + 1 numbers per pair and step), C is whole on every rank.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["factored_state", "factored_direction_and_map_back", "EPS1"]

# Added to g̃² before averaging, as Adafactor's ε1, so that an all-zero row or
# column (an unused output unit) never makes R·Cᵀ/mean(R) divide 0 by 0.
EPS1 = 1e-30


def factored_state(m: int, n: int, beta1: float, moment_dtype: torch.dtype, dt: torch.dtype, device) -> dict:
    """Fresh state of one pair: R (m,), C (n,) in the compute dtype; exp_avg (m, n)
    in moment_dtype only when β1 > 0."""
    st = {
        "step": torch.zeros((), dtype=torch.float32, device=device),
        "exp_avg_sq_row": torch.zeros(m, dtype=dt, device=device),
        "exp_avg_sq_col": torch.zeros(n, dtype=dt, device=device),
    }
    if beta1 > 0:
        mdt = dt if moment_dtype == torch.float32 else moment_dtype
        st["exp_avg"] = torch.zeros(m, n, dtype=mdt, device=device)
    return st


def _fold_second_moment(
    left: Tensor, right: Tensor, st: dict, beta2: float, rows: int, buf: Tensor, spec=None, m_total: int = 0
) -> Tensor:
    """Pass 1: fold this step's row and column means of g̃² into R and C; return mean(R)
    (over all m rows: under FSDP2 `left` and R are this rank's rows of m_total)."""
    m, n = left.shape[0], right.shape[1]
    row_mean = torch.empty(m, dtype=left.dtype, device=left.device)
    col_sum = torch.zeros(n, dtype=left.dtype, device=left.device)
    for i in range(0, m, rows):
        j = min(i + rows, m)
        gt = buf[: j - i]
        torch.mm(left[i:j], right, out=gt)
        gt.square_().add_(EPS1)
        torch.mean(gt, dim=1, out=row_mean[i:j])
        col_sum += gt.sum(0)
    st["exp_avg_sq_row"].lerp_(row_mean, 1 - beta2)
    if spec is None:
        st["exp_avg_sq_col"].lerp_(col_sum.div_(m), 1 - beta2)
        return st["exp_avg_sq_row"].mean()
    sums = spec.all_reduce_(torch.cat([col_sum, st["exp_avg_sq_row"].sum().reshape(1)]))
    st["exp_avg_sq_col"].lerp_(sums[:n].div_(m_total), 1 - beta2)
    return sums[n] / m_total


def factored_direction_and_map_back(
    left: Tensor,
    right: Tensor,
    A: Tensor,
    B: Tensor,
    st: dict,
    betas: tuple[float, float],
    eps: float,
    rows: int,
    buf: Tensor,
    BtD: Tensor,
    DAt: Tensor,
    spec=None,
    m_total: int = 0,
) -> None:
    """g̃ = left·right; update the factored moments; write BtD = Bᵀ·ĝ and DAt = ĝ·Aᵀ for
    the Adam direction ĝ = m̂/(√v̂ + ε), v̂ = R·Cᵀ/mean(R)/(1 − β2ᵗ). `step` already counts
    this step; buf is a (rows, n) scratch block. `st` holds this rank's parts (local
    tensors); spec/m_total: the FSDP2 shard spec and B's total rows (see sharded.py)."""
    beta1, beta2 = betas
    m = left.shape[0]
    t = float(st["step"])
    R_mean = _fold_second_moment(left, right, st, beta2, rows, buf, spec, m_total)
    R, C = st["exp_avg_sq_row"], st["exp_avg_sq_col"]
    # √v̂_ij = √R_i · √(C_j / (mean(R)·(1 − β2ᵗ))): two vectors, no m×n estimate kept.
    r_sqrt = R.sqrt()
    c_sqrt = (C / (R_mean * (1 - beta2**t))).sqrt()
    exp_avg = st.get("exp_avg")
    bc1 = 1 - beta1**t if exp_avg is not None else 1.0
    BtD.zero_()
    At = A.T
    for i in range(0, m, rows):
        j = min(i + rows, m)
        d = buf[: j - i]
        torch.mm(left[i:j], right, out=d)  # g̃ rows again
        if exp_avg is not None:
            m_rows = exp_avg[i:j].to(d.dtype).lerp_(d, 1 - beta1)
            exp_avg[i:j].copy_(m_rows)  # rounded once to the moment dtype
            d.copy_(m_rows)
        denom = torch.outer(r_sqrt[i:j], c_sqrt).add_(eps)
        d.div_(denom).div_(bc1)
        BtD.addmm_(B[i:j].T, d)
        torch.mm(d, At, out=DAt[i:j])
