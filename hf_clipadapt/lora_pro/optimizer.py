"""LoRA-Pro's AdamW (Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?",
ICLR 2025): full mode (the paper's Algorithm 2) and efficient mode.

It takes the model, pairs lora_A/lora_B by module (pairs.py), runs the closed form of
functional.py on every pair, and trains every other trainable parameter (heads, biases,
DoRA magnitudes, ...) with plain AdamW. The pieces live by concern: base.py (pairs,
shape groups, the update), full_mode.py (the m×n pass), factored.py (the memory option),
sharded.py (FSDP2), state_dict.py (name-keyed checkpoints), sgd.py (LoraProSGD).

Speed: pairs of equal shape are stacked, so the closed form's small ops
(r×n, m×r, and the batched r×r eigh) run once per shape group. The only m×n
work, in full mode, is one GEMM that writes g̃, torch's fused Adam kernel on the
moments and two skinny GEMMs that map the Adam direction back, done on
cache-sized row blocks: no m×m or n×n matrix, and no m×n temporary at all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw as _torch_adamw

from . import functional
from .base import LoraProBase, ShapeGroup
from .factored import factored_direction_and_map_back, factored_state
from .full_mode import adam_and_map_back
from .pairs import LoraPair
from .sgd import LoraProSGD, check_common
from .sharded import local, sharded_like

__all__ = ["LoraProAdamW", "LoraProSGD"]


def _check_official_options(mode: str, factored: bool, bias_correction: bool, clip_norm: float) -> None:
    if not (isinstance(clip_norm, (int, float)) and clip_norm >= 0):
        raise ValueError(
            f"official_clip_norm must be a number ≥ 0 (0 = off; the official runs use 1.0), got {clip_norm!r}."
        )
    if (bias_correction or clip_norm) and (mode != "full" or factored):
        raise ValueError(
            "official_bias_correction / official_clip_norm restore quirks of the official full mode "
            '(exact moments): use mode="full" without factored=True, or drop them.'
        )


def _small_adamw_(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """AdamW on parameters whose moments are shaped like them (the plain group,
    and A/B in efficient mode). Moments are float32 (float64 for float64 params).
    Same-dtype parameters go through torch's own fused kernel, so plain
    parameters get exactly torch.optim.AdamW; bf16/fp16 parameters are updated
    in float32 and rounded once."""
    fast = [i for i, p in enumerate(params) if p.dtype == states[i]["exp_avg"].dtype]
    if fast:
        fused = all(params[i].device.type in ("cpu", "cuda") for i in fast)
        _torch_adamw(
            [params[i] for i in fast],
            [grads[i].to(params[i].dtype) for i in fast],
            [states[i]["exp_avg"] for i in fast],
            [states[i]["exp_avg_sq"] for i in fast],
            [],
            [states[i]["step"] for i in fast],
            fused=fused or None,
            foreach=None if fused else False,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=lr,
            weight_decay=weight_decay,
            eps=eps,
            maximize=False,
        )
    for i in sorted(set(range(len(params))) - set(fast)):
        p, st = params[i], states[i]
        st["step"] += 1
        step = float(st["step"])
        g = grads[i].to(st["exp_avg"].dtype)
        st["exp_avg"].lerp_(g, 1 - beta1)
        st["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        p32 = p.detach().to(g.dtype) * (1 - lr * weight_decay)
        p32.addcdiv_(st["exp_avg"], denom, value=-lr / (1 - beta1**step))
        p.copy_(p32)


def _default_b_damping(mode: str) -> float:
    """Efficient mode runs Adam on ĝA = (BᵀB)⁻¹·gA/s² + X·A, which is ~1/‖B‖ times too large
    while B is small (PEFT starts it at 0), so Adam's second moment of A is inflated for
    thousands of steps and A stalls; damping BᵀB at A's scale removes that (see
    `functional.b_damping_value`). Full mode runs Adam on g̃, which has no such scale, and
    keeps the paper's undamped projection."""
    return 1.0 if mode == "efficient" else 0.0


class LoraProAdamW(LoraProBase):
    """AdamW with LoRA-Pro's gradient adjustment (Wang et al., "LoRA-Pro: Are
    Low-Rank Adapters Properly Optimized?", ICLR 2025, Algorithm 2 and its efficient variant).

    mode="full" (the paper's Algorithm 2): Adam runs on the equivalent full-weight
    gradient g̃ with m×n moments per adapted matrix (memory: 2·m·n·bytes(moment_dtype)
    per pair, e.g. 2·4096·11008·4 B ≈ 361 MB for one Llama-2-7B MLP matrix), then
    the Adam direction is mapped back to A and B through the closed form.
    mode="efficient": the closed form adjusts the raw gradients, then ordinary
    AdamW steps A and B (memory as plain LoRA).

    b_damping: K = (BᵀB + λ_B·I)⁻¹ with λ_B = b_damping·tr(AAᵀ)/r in the closed form
    (None: 1.0 in efficient mode, 0.0, the paper's exact projection, in full mode).
    Without it, efficient mode's ĝA is ~1/‖B‖ times too large after PEFT's B = 0 start
    and Adam's second moment of A stays inflated for thousands of steps
    (benchmarks/lora_pro/efficient_diagnosis.py measures it).

    factored=True (full mode only): the memory option. The m×n second moment is
    factored into a row and a column vector as in Adafactor (Shazeer & Stern, ICML
    2018); the first moment is kept in moment_dtype (e.g. torch.bfloat16: 4× less
    state than exact float32) or dropped with betas=(0.0, β2) (state O(m + n)).

    Every other trainable parameter gets plain AdamW (group with "lorapro": False).
    Weight decay is decoupled and applies to trainable parameters only (A, B and
    the plain group), never to the frozen base weight.

    Two quirks of the official code (mrflogs/LoRA-Pro, the patched DeepSpeed
    `deepspeed/runtime/zero/stage_1_and_2.py`) can be restored in full mode (exact
    moments, not factored); both are off by default (docs/fidelity.md (LoRA-Pro section) says why):
    official_bias_correction=True: Adam's bias corrections use step t + 1 (the official
    `step()` increments `global_step` at line 1935 before `lorapro_full_adjustment`
    computes `step = global_step + 1`, line 1867), so the first update is ≈0.74 of Adam's.
    official_clip_norm=c > 0: the adjusted update (ĝA, ĝB) is divided by
    max(1, (‖g‖ + 1e-6)/c), ‖g‖ the norm of the raw gradients of every trainable parameter
    before the adjustment (line 1928, then `unscale_and_clip_grads`, lines 1983 and
    2045-2052, on the adjusted gradients). Only the LoRA pairs' update is divided; leave
    Trainer's max_grad_norm at 0 with it, or the raw gradients are clipped first.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        mode: str = "full",
        damping: float = 1e-8,
        moment_dtype: torch.dtype = torch.float32,
        b_damping: float | None = None,
        factored: bool = False,
        official_bias_correction: bool = False,
        official_clip_norm: float = 0.0,
    ):
        _check_official_options(mode, factored, official_bias_correction, official_clip_norm)
        if mode not in ("full", "efficient"):
            raise ValueError(f'mode must be "full" (the paper\'s Algorithm 2) or "efficient", got {mode!r}.')
        if moment_dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            raise ValueError(
                f"moment_dtype must be a floating dtype (float32 default, or bfloat16), got {moment_dtype}."
            )
        check_common(lr, eps=eps, betas=betas, weight_decay=weight_decay)
        if factored and mode != "full":
            raise ValueError(
                'factored=True factors the m×n second moment of mode="full"; efficient mode already keeps '
                'LoRA-sized moments. Use mode="full" with factored=True, or drop factored.'
            )
        b_damping = _default_b_damping(mode) if b_damping is None else b_damping
        if not (isinstance(b_damping, (int, float)) and b_damping >= 0):
            raise ValueError(f"b_damping must be a number ≥ 0 (1.0 is efficient mode's default), got {b_damping!r}.")
        self.mode = mode
        self.moment_dtype = moment_dtype
        self.b_damping = float(b_damping)
        self.factored = bool(factored)
        self.official_bias_correction = bool(official_bias_correction)
        self.official_clip_norm = float(official_clip_norm)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(model, defaults, damping)
        self._scratch: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _extra_meta(self) -> dict:
        return {"mode": self.mode, "factored": self.factored}

    def _fresh_state(self, p: Tensor) -> dict:
        dt = functional.compute_dtype(p.dtype)
        step = torch.zeros((), dtype=torch.float32, device=local(p).device)
        if self.mode == "full" and id(p) in self._names and any(p is q for q in self._lora_group()["params"]):
            pair = self._pair_of_A.get(id(p))
            if pair is None:
                return {}  # B carries no state: the pair's m×n moments live under lora_A's name
            return self._full_state(pair, dt, step)
        return {"step": step, "exp_avg": torch.zeros_like(p, dtype=dt), "exp_avg_sq": torch.zeros_like(p, dtype=dt)}

    def _full_state(self, pair: LoraPair, dt: torch.dtype, step: Tensor) -> dict:
        """The m×n moments of one pair (or their factored form); under FSDP2 this rank's
        rows of them, the rows of B it holds, as DTensors."""
        m, n = pair.B.shape[0], pair.n
        m_local, device = local(pair.B).shape[0], step.device
        if self.factored:
            beta1 = self._lora_group()["betas"][0]
            st = factored_state(m_local, n, beta1, self.moment_dtype, dt, device)
            for k in ("exp_avg_sq_row", "exp_avg"):
                if k in st:
                    st[k] = sharded_like(st[k], self._shards, (m,) + tuple(st[k].shape[1:]))
            return st
        mdt = dt if self.moment_dtype == torch.float32 else self.moment_dtype

        def zeros():
            return sharded_like(torch.zeros(m_local, n, dtype=mdt, device=device), self._shards, (m, n))

        return {"step": step, "exp_avg": zeros(), "exp_avg_sq": zeros()}

    def _state(self, p: Tensor) -> dict:
        st = self.state[p]
        if not st:
            st.update(self._fresh_state(p))
        return st

    def _local_state(self, p: Tensor) -> dict:
        """p's state with this rank's part of each tensor (sharing storage)."""
        return {k: local(v) for k, v in self._state(p).items()}

    def _update(self) -> None:
        if self.mode == "full":
            self._step_full(self._official_clip_factor())
        else:
            self._step_efficient()
        self._step_plain()

    def _adamw(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        """AdamW on parameters whose moments are shaped like them, on this rank's parts."""
        beta1, beta2 = group["betas"]
        _small_adamw_(
            [local(p) for p in params],
            grads,
            [self._local_state(p) for p in params],
            lr=float(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
        )

    # ------------------------------------------------------------------ plain
    def _step_plain(self) -> None:
        group = self._plain_group()
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("LoraProAdamW does not support sparse gradients; use dense embeddings.")
        self._adamw(group, params, [local(p.grad) for p in params])

    # -------------------------------------------------------------- efficient
    def _step_efficient(self) -> None:
        params, grads = [], []
        for g in self._shape_groups():
            coef = functional.projection_coefficients(
                *g.stats(), g.s, self.damping, solve_x=True, b_damping=self.b_damping
            )
            gA_hat, gB_hat = functional.apply_projection(coef, g.A, g.B, g.gA, g.gB)
            params += [p.A for p in g.pairs] + [p.B for p in g.pairs]
            updates = list(g.own_rows(gA_hat).unbind(0)) + list(gB_hat.unbind(0))
            grads += [u.reshape(local(p).shape) for u, p in zip(updates, params[len(grads) :])]  # conv: (r, in, k...)
        if params:
            self._adamw(self._lora_group(), params, grads)

    # ------------------------------------------------------------------- full
    # Rows of the m×n work done at once on CPU: small enough that g̃, the Adam
    # direction and the moment rows stay in cache between the GEMM that writes
    # g̃, the fused Adam kernel and the two GEMMs that read the direction back, so
    # only the moments themselves stream through memory. GPUs take it whole.
    _CPU_CHUNK_ELEMS = 1 << 18

    def _scratch_rows(self, rows: int, n: int, dt: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (rows, n, dt, device)
        if key not in self._scratch:
            self._scratch[key] = tuple(torch.empty(rows, n, dtype=dt, device=device) for _ in range(2))
        return self._scratch[key]

    def _official_clip_factor(self) -> float:
        """max(1, (‖raw gradients‖ + 1e-6)/official_clip_norm); 1 when the option is off."""
        if not self.official_clip_norm:
            return 1.0
        grads = self._all_grads()
        if self._shards is not None:  # sum of squares over this rank's parts, then over the ranks
            sq = (
                torch.stack([g.double().square().sum() for g in grads]).sum()
                if grads
                else torch.zeros((), dtype=torch.float64)
            )
            norm = self._shards.all_reduce_(sq.reshape(1)).sqrt()
        else:
            norm = (
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]))
                if grads
                else torch.zeros(())
            )
        return max(1.0, (float(norm) + 1e-6) / self.official_clip_norm)

    def _step_full(self, clip_factor: float = 1.0) -> None:
        group = self._lora_group()
        for g in self._shape_groups():
            gA_hat, gB_hat = self._full_adjusted(g, group["betas"], group["eps"])
            if clip_factor != 1.0:  # official_clip_norm: the raw gradients' clip factor, on the adjusted update
                gA_hat, gB_hat = gA_hat / clip_factor, gB_hat / clip_factor
            # Step 5: decoupled weight decay on A and B, then the update.
            self._apply_update_(g, gA_hat, gB_hat, float(group["lr"]), group["weight_decay"])

    def _full_adjusted(self, g: ShapeGroup, betas: tuple[float, float], eps: float) -> tuple[Tensor, Tensor]:
        """Steps 1-4 of Algorithm 2 for one shape group: (ĝA, ĝB) (ĝB: this rank's rows)."""
        A, B, s = g.A, g.B, g.s.view(-1, 1, 1)
        BtB, AAt, gAAt, BtgB = g.stats()
        # Step 1: the closed form with X = 0 on the raw gradients; g̃ does not depend on X.
        coef0 = functional.projection_coefficients(
            BtB, AAt, gAAt, BtgB, g.s, self.damping, solve_x=False, b_damping=self.b_damping
        )
        gA0, gB0 = functional.apply_projection(coef0, A, B, g.gA, g.gB)
        # g̃ = [B, ĝB]·(s·[ĝA; A]); steps 2-3 per pair, on its own m×n moments.
        left, right = torch.cat([B, gB0], -1), torch.cat([gA0, A], -2).mul_(s)
        gA1, gB1 = torch.empty_like(A), torch.empty_like(B)
        for i, pair in enumerate(g.pairs):
            self._pair_full_step(pair, left[i], right[i], A[i], B[i], betas, eps, gA1[i], gB1[i])
        g.all_reduce_(gA1)  # Bᵀ·ĝ: a sum over the rows of B
        gA1.mul_(s)  # gA' = s·Bᵀ·ĝ
        gB1.mul_(s)  # gB' = s·ĝ·Aᵀ
        # Step 4: closed form with the Sylvester X.
        BtgB1 = g.all_reduce_(B.mT @ gB1)
        coef = functional.projection_coefficients(
            BtB, AAt, gA1 @ A.mT, BtgB1, g.s, self.damping, solve_x=True, b_damping=self.b_damping
        )
        return functional.apply_projection(coef, A, B, gA1, gB1)

    def _pair_full_step(
        self,
        pair: LoraPair,
        left: Tensor,
        right: Tensor,
        A: Tensor,
        B: Tensor,
        betas: tuple[float, float],
        eps: float,
        BtD: Tensor,
        DAt: Tensor,
    ) -> None:
        """Fold g̃ = left·right into the pair's m×n moments (this rank's rows) and write
        BtD = Bᵀ·ĝ (this rank's part of the sum), DAt = ĝ·Aᵀ."""
        st = self._state(pair.A)
        st["step"] += 1
        m, n = left.shape[0], right.shape[1]
        rows = m if A.device.type != "cpu" else min(m, self._CPU_CHUNK_ELEMS // n)
        bufs = self._scratch_rows(max(1, rows), n, left.dtype, A.device)
        st = {k: local(v) for k, v in st.items()}
        if self.factored:
            factored_direction_and_map_back(
                left, right, A, B, st, betas, eps, bufs[0].shape[0], bufs[0], BtD, DAt, self._shards, pair.B.shape[0]
            )
            return
        # official_bias_correction: the official code's corrections run one step ahead (t + 1).
        bc_step = st["step"] + 1 if self.official_bias_correction else st["step"]
        adam_and_map_back(left, right, A, B, (st["exp_avg"], st["exp_avg_sq"]), bc_step, betas, eps, bufs, BtD, DAt)
