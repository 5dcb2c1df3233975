"""Full mode's m×n work for one pair: fold g̃ = left·right into the Adam moments and map
the Adam direction ĝ back to the factors as Bᵀ·ĝ (r×n) and ĝ·Aᵀ (m×r).

It runs on row blocks small enough (on CPU) that g̃, the direction and the moment rows
stay in cache between the GEMM that writes g̃, the fused Adam kernel and the two GEMMs
that read the direction back, so only the moments themselves stream through memory
(read and written once per step); no m×n temporary is ever formed. Under FSDP2 `left`,
`B`, the moments and `DAt` are this rank's rows, and `BtD` is its part of the sum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["adam_direction_", "adam_and_map_back"]


def adam_direction_(
    gt: Tensor, out: Tensor, m: Tensor, v: Tensor, step: Tensor, beta1: float, beta2: float, eps: float
) -> None:
    """out ← m̂/(√v̂ + ε) after folding g̃ into the moments m, v, in place
    (step already counts this step)."""
    if m.dtype == gt.dtype and gt.device.type in ("cpu", "cuda"):
        # torch's fused AdamW kernel does the whole elementwise update in one
        # pass; on a zeroed "parameter" with lr = -1 it leaves exactly the Adam
        # direction there.
        out.zero_()
        torch._fused_adamw_(
            [out],
            [gt],
            [m],
            [v],
            [],
            [step],
            lr=-1.0,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )
        return
    # bf16/fp16 moments (memory option): math in gt's dtype, moments rounded once.
    t = float(step)
    m32 = m.to(gt.dtype).lerp_(gt, 1 - beta1)
    v32 = out.copy_(v).mul_(beta2).addcmul_(gt, gt, value=1 - beta2)
    m.copy_(m32)
    v.copy_(v32)
    v32.sqrt_().div_(math.sqrt(1 - beta2**t)).add_(eps)
    torch.div(m32, v32, out=out).div_(1 - beta1**t)


def adam_and_map_back(
    left: Tensor,
    right: Tensor,
    A: Tensor,
    B: Tensor,
    moments: tuple[Tensor, Tensor],
    bc_step: Tensor,
    betas: tuple[float, float],
    eps: float,
    bufs: tuple[Tensor, Tensor],
    BtD: Tensor,
    DAt: Tensor,
) -> None:
    """Fold g̃ = left·right into the m×n moments and write BtD = Bᵀ·ĝ, DAt = ĝ·Aᵀ,
    block by block of `bufs[0].shape[0]` rows (bufs: two row blocks of scratch)."""
    exp_avg, exp_avg_sq = moments
    gt_buf, dir_buf = bufs
    m, rows = left.shape[0], gt_buf.shape[0]
    BtD.zero_()  # r×n, accumulates Bᵀ·ĝ over row blocks; DAt (m×r) is filled block by block
    At = A.T
    for i in range(0, m, rows):
        j = min(i + rows, m)
        gt, d = gt_buf[: j - i], dir_buf[: j - i]
        torch.mm(left[i:j], right, out=gt)
        adam_direction_(gt, d, exp_avg[i:j], exp_avg_sq[i:j], bc_step, betas[0], betas[1], eps)
        BtD.addmm_(B[i:j].T, d)
        torch.mm(d, At, out=DAt[i:j])
