"""LoRA-Pro optimizers: LoraProAdamW (full / efficient) and LoraProSGD.

Both take the model, pair lora_A/lora_B by module (pairs.py), run the closed
form of functional.py on every pair, and train every other trainable parameter
(heads, biases, DoRA magnitudes, ...) with the plain base optimizer.

Speed: pairs of equal shape are stacked, so the closed form's small ops
(r×n, m×r, and the batched r×r eigh) run once per shape group. The only m×n
work, in full mode, is one GEMM that writes g̃, torch's fused Adam kernel on the
moments and two skinny GEMMs that map the Adam direction back, done on
cache-sized row blocks: no m×m or n×n matrix, and no m×n temporary at all.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw as _torch_adamw

from . import functional as F
from .checks import warn_if_classifier_frozen
from .factored import factored_direction_and_map_back, factored_state
from .pairs import LoraPair, check_not_deepspeed, find_lora_pairs

__all__ = ["LoraProAdamW", "LoraProSGD"]

_FORMAT = 1


@dataclass(eq=False)
class _ShapeGroup:
    """Pairs of one shape, stacked: A (G, r, n), B (G, m, r), their gradients,
    and s (G,), all in the compute dtype (float32, or float64 for float64)."""

    pairs: list[LoraPair]
    A: Tensor
    B: Tensor
    gA: Tensor
    gB: Tensor
    s: Tensor

    @classmethod
    def build(cls, members: list[tuple[LoraPair, tuple[Tensor, Tensor]]]) -> "_ShapeGroup":
        pairs = [p for p, _ in members]
        dt = F.compute_dtype(pairs[0].A.dtype)

        def stack(ts):
            return torch.stack(ts).to(dt)

        A = stack([p.A.detach() for p in pairs])
        return cls(
            pairs,
            A,
            stack([p.B.detach() for p in pairs]),
            stack([g[0] for _, g in members]),
            stack([g[1] for _, g in members]),
            torch.tensor([p.scaling for p in pairs], dtype=dt, device=A.device),
        )

    @property
    def A_params(self) -> list[Tensor]:
        return [p.A for p in self.pairs]

    @property
    def B_params(self) -> list[Tensor]:
        return [p.B for p in self.pairs]

    def stats(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """BᵀB, AAᵀ, gA·Aᵀ, Bᵀ·gB: the r×r inputs of the closed form."""
        A, B = self.A, self.B
        return B.mT @ B, A @ A.mT, self.gA @ A.mT, B.mT @ self.gB


class _LoraProBase(torch.optim.Optimizer):
    """Pair discovery, non-finite-gradient skip, name-keyed state dicts."""

    def __init__(self, model: nn.Module, defaults: dict[str, Any], damping: float):
        check_not_deepspeed()
        if not (isinstance(damping, (int, float)) and damping >= 0):
            raise ValueError(f"damping must be a number ≥ 0 (the official code uses 1e-8), got {damping!r}.")
        self.damping = float(damping)
        pairs, plain = find_lora_pairs(model)
        warn_if_classifier_frozen(model)
        self._pairs: list[LoraPair] = pairs
        self._names: dict[int, str] = {id(p.A): p.a_name for p in pairs}
        self._names.update({id(p.B): p.b_name for p in pairs})
        self._names.update({id(p): n for n, p in plain})
        groups = [
            {"params": [t for p in pairs for t in (p.A, p.B)], "lorapro": True},
            # Always present (maybe empty) so group indices are stable across models.
            {"params": [p for _, p in plain], "lorapro": False},
        ]
        super().__init__(groups, defaults)
        self._groups_fixed = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # step() walks the LoRA pairs and the plain group only; a group added
        # later would silently never be stepped.
        if getattr(self, "_groups_fixed", False):
            raise TypeError(
                f"{type(self).__name__} builds its own two parameter groups from the model (LoRA pairs, "
                "everything else trainable); it cannot take extra groups. Set the parameters' requires_grad "
                "before building it, or change param_groups[i]['lr'] etc. to tune a group."
            )
        super().add_param_group(param_group)

    # ----------------------------------------------------------------- helpers
    @property
    def lora_pairs(self) -> list[LoraPair]:
        """The (A, B) pairs this optimizer found, with their module names."""
        return list(self._pairs)

    def _all_grads(self) -> list[Tensor]:
        return [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._grads_finite():
            return loss
        self._update()
        return loss

    def _update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grads_finite(self) -> bool:
        grads = self._all_grads()
        if not grads:
            return True
        # ∞-norm propagates NaN and cannot overflow; one foreach pass, one sync.
        norms = torch._foreach_norm(grads, float("inf"))
        dev = norms[0].device
        finite = bool(torch.stack([n.to(device=dev, dtype=torch.float32) for n in norms]).isfinite().all())
        if not finite:
            warnings.warn(
                f"{type(self).__name__}: non-finite (NaN/inf) gradients; skipping this optimizer step "
                "(parameters, moments and step counts unchanged), as torch.amp.GradScaler does.",
                RuntimeWarning,
                stacklevel=3,
            )
        return finite

    def _lora_group(self) -> dict:
        return next(g for g in self.param_groups if g["lorapro"])

    def _plain_group(self) -> dict:
        return next(g for g in self.param_groups if not g["lorapro"])

    def _pair_grads(self, pair: LoraPair) -> tuple[Tensor, Tensor] | None:
        gA, gB = pair.A.grad, pair.B.grad
        if gA is None and gB is None:
            return None  # pair not used in this forward: leave it alone, like torch optimizers
        if gA is not None and gA.is_sparse or gB is not None and gB.is_sparse:
            raise RuntimeError(
                f"sparse gradient on '{pair.module_name}': LoRA-Pro needs dense gradients; "
                "build the embedding without sparse=True."
            )
        gA = torch.zeros_like(pair.A) if gA is None else gA
        gB = torch.zeros_like(pair.B) if gB is None else gB
        return gA, gB

    def _shape_groups(self) -> list[_ShapeGroup]:
        """Pairs that received gradients, stacked by (m, n, r, dtype, device), so
        that every small op of the closed form runs once per group, batched."""
        buckets: dict[tuple, list] = defaultdict(list)
        for pair in self._pairs:
            grads = self._pair_grads(pair)
            if grads is not None:
                key = (tuple(pair.A.shape), tuple(pair.B.shape), pair.A.dtype, pair.B.dtype, pair.A.device)
                buckets[key].append((pair, grads))
        return [_ShapeGroup.build(members) for members in buckets.values()]

    @staticmethod
    def _apply_update_(group: _ShapeGroup, gA_hat: Tensor, gB_hat: Tensor, lr: float, wd: float) -> None:
        """A ← A·(1 − lr·wd) − lr·ĝA, B likewise (decoupled decay, trainable factors only)."""
        for params, cur, upd in ((group.A_params, group.A, gA_hat), (group.B_params, group.B, gB_hat)):
            if params[0].dtype == cur.dtype:
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
                torch._foreach_add_(params, list(upd.unbind(0)), alpha=-lr)
            else:  # low-precision parameters: update in float32, round once
                new = cur.mul(1 - lr * wd).add_(upd, alpha=-lr)
                for p, v in zip(params, new.unbind(0)):
                    p.copy_(v)

    # ------------------------------------------------------------ state dicts
    def _extra_meta(self) -> dict:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State keyed by parameter name (as in model.named_parameters()), so a
        checkpoint survives any change in parameter order."""
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st:
                    state[self._names[id(p)]] = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in st.items()}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = [self._names[id(p)] for p in group["params"]]
            groups.append(g)
        meta = {"format": _FORMAT, "optimizer": type(self).__name__, **self._extra_meta()}
        return {"state": state, "param_groups": groups, "lorapro": meta}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        meta = state_dict.get("lorapro")
        if meta is None:
            raise ValueError(
                f"this optimizer state was not written by a LoRA-Pro optimizer (no 'lorapro' entry), so it cannot "
                f"be loaded into {type(self).__name__}. Start the optimizer fresh, or resume from a checkpoint "
                "saved with the same LoRA-Pro optimizer."
            )
        if meta.get("optimizer") != type(self).__name__:
            raise ValueError(
                f"checkpoint was saved by {meta.get('optimizer')}, not {type(self).__name__}; "
                "resume with the optimizer that wrote it."
            )
        for key, want in self._extra_meta().items():
            # Checkpoints written before the memory option carry no "factored" entry.
            if meta.get(key, False if key == "factored" else None) != want:
                raise ValueError(
                    f"checkpoint was saved with {key}={meta.get(key)!r} but this optimizer has {key}={want!r}; their "
                    f"states are not interchangeable. Build the optimizer with {key}={meta.get(key)!r} to resume."
                )
        by_name = {self._names[id(p)]: p for g in self.param_groups for p in g["params"]}
        saved_names = {n for g in state_dict["param_groups"] for n in g["params"]}
        if saved_names != set(by_name):
            missing, extra = sorted(set(by_name) - saved_names), sorted(saved_names - set(by_name))
            raise ValueError(
                "checkpoint and model have different trainable parameters "
                f"(missing from checkpoint: {missing[:5]}{'…' if len(missing) > 5 else ''}; "
                f"unknown to this model: {extra[:5]}{'…' if len(extra) > 5 else ''}). "
                "Resume with the same model, adapter config and modules_to_save."
            )
        new_state: dict[Tensor, dict] = defaultdict(dict)
        for name, st in state_dict["state"].items():
            p = by_name[name]
            new_state[p] = self._load_param_state(p, st, name)
        for saved in state_dict["param_groups"]:
            group = next(g for g in self.param_groups if g["lorapro"] == saved["lorapro"])
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def _load_param_state(self, p: Tensor, st: dict, name: str) -> dict:
        out, fresh = {}, self._fresh_state(p)
        for k, v in st.items():
            if isinstance(v, Tensor):
                ref = fresh.get(k) if k != "step" else None
                if ref is not None and ref.shape != v.shape:
                    raise ValueError(
                        f"state '{k}' of '{name}' has shape {tuple(v.shape)} but this optimizer needs "
                        f"{tuple(ref.shape)}; the checkpoint comes from a different mode or adapter rank."
                    )
                dtype = ref.dtype if ref is not None else torch.float32  # only "step" has no ref
                v = v.to(device=p.device, dtype=dtype).clone()
            out[k] = v
        return out

    def _fresh_state(self, p: Tensor) -> dict:
        raise NotImplementedError


def _check_common(lr: float, eps: float | None = None, betas=None, weight_decay: float = 0.0, momentum=None) -> None:
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


def _check_official_options(mode: str, factored: bool, bias_correction: bool, clip_norm: float) -> None:
    if not (isinstance(clip_norm, (int, float)) and clip_norm >= 0):
        raise ValueError(f"official_clip_norm must be a number ≥ 0 (0 = off; the official runs use 1.0), "
                         f"got {clip_norm!r}.")  # fmt: skip
    if (bias_correction or clip_norm) and (mode != "full" or factored):
        raise ValueError("official_bias_correction / official_clip_norm restore quirks of the official full mode "
                         '(exact moments): use mode="full" without factored=True, or drop them.')  # fmt: skip


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


class LoraProAdamW(_LoraProBase):
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
        _check_common(lr, eps=eps, betas=betas, weight_decay=weight_decay)
        if factored and mode != "full":
            raise ValueError(
                'factored=True factors the m×n second moment of mode="full"; efficient mode already keeps '
                "LoRA-sized moments. Use mode=\"full\" with factored=True, or drop factored."
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
        self._pair_of_A = {id(p.A): p for p in self._pairs}

    def _extra_meta(self) -> dict:
        return {"mode": self.mode, "factored": self.factored}

    def _fresh_state(self, p: Tensor) -> dict:
        dt = F.compute_dtype(p.dtype)
        step = torch.zeros((), dtype=torch.float32, device=p.device)
        lora = self._lora_group()["params"]
        if self.mode == "full" and any(p is q for q in lora):
            pair = self._pair_of_A.get(id(p))
            if pair is None:
                return {}  # B carries no state: the pair's m×n moments live under lora_A's name
            if self.factored:
                beta1 = self._lora_group()["betas"][0]
                return factored_state(pair.B.shape[0], pair.A.shape[1], beta1, self.moment_dtype, dt, p.device)
            mdt = dt if self.moment_dtype == torch.float32 else self.moment_dtype
            shape = (pair.B.shape[0], pair.A.shape[1])
            z = lambda: torch.zeros(shape, dtype=mdt, device=p.device)  # noqa: E731
            return {"step": step, "exp_avg": z(), "exp_avg_sq": z()}
        return {"step": step, "exp_avg": torch.zeros_like(p, dtype=dt), "exp_avg_sq": torch.zeros_like(p, dtype=dt)}

    def _state(self, p: Tensor) -> dict:
        st = self.state[p]
        if not st:
            st.update(self._fresh_state(p))
        return st

    def _update(self) -> None:
        if self.mode == "full":
            self._step_full(self._official_clip_factor())
        else:
            self._step_efficient()
        self._step_plain()

    # ------------------------------------------------------------------ plain
    def _step_plain(self) -> None:
        group = self._plain_group()
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("LoraProAdamW does not support sparse gradients; use dense embeddings.")
        beta1, beta2 = group["betas"]
        _small_adamw_(
            params, [p.grad for p in params], [self._state(p) for p in params],
            lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
        )

    # -------------------------------------------------------------- efficient
    def _step_efficient(self) -> None:
        group = self._lora_group()
        params, grads, states = [], [], []
        for g in self._shape_groups():
            coef = F.projection_coefficients(*g.stats(), g.s, self.damping, solve_x=True, b_damping=self.b_damping)
            gA_hat, gB_hat = F.apply_projection(coef, g.A, g.B, g.gA, g.gB)
            params += g.A_params + g.B_params
            grads += list(gA_hat.unbind(0)) + list(gB_hat.unbind(0))
        if not params:
            return
        states = [self._state(p) for p in params]
        beta1, beta2 = group["betas"]
        _small_adamw_(
            params, grads, states,
            lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
        )

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
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])) if grads \
            else torch.zeros(())  # fmt: skip
        return max(1.0, (float(norm) + 1e-6) / self.official_clip_norm)

    def _step_full(self, clip_factor: float = 1.0) -> None:
        group = self._lora_group()
        lr, wd, eps = float(group["lr"]), group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for g in self._shape_groups():
            A, B, s = g.A, g.B, g.s.view(-1, 1, 1)
            BtB, AAt = B.mT @ B, A @ A.mT
            # Step 1: the closed form with X = 0 on the raw gradients; g̃ does not depend on X.
            coef0 = F.projection_coefficients(
                BtB, AAt, g.gA @ A.mT, B.mT @ g.gB, g.s, self.damping, solve_x=False, b_damping=self.b_damping
            )
            gA0, gB0 = F.apply_projection(coef0, A, B, g.gA, g.gB)
            # g̃ = [B, ĝB]·(s·[ĝA; A]); steps 2-3 per pair, on its own m×n moments.
            left, right = torch.cat([B, gB0], -1), torch.cat([gA0, A], -2).mul_(s)
            gA1, gB1 = torch.empty_like(A), torch.empty_like(B)
            for i, pair in enumerate(g.pairs):
                st = self._state(pair.A)
                st["step"] += 1
                self._adam_and_map_back(left[i], right[i], A[i], B[i], st, beta1, beta2, eps, gA1[i], gB1[i])
            gA1.mul_(s)  # gA' = s·Bᵀ·ĝ
            gB1.mul_(s)  # gB' = s·ĝ·Aᵀ
            # Step 4: closed form with the Sylvester X.
            coef = F.projection_coefficients(
                BtB, AAt, gA1 @ A.mT, B.mT @ gB1, g.s, self.damping, solve_x=True, b_damping=self.b_damping
            )
            gA_hat, gB_hat = F.apply_projection(coef, A, B, gA1, gB1)
            if clip_factor != 1.0:  # official_clip_norm: the raw gradients' clip factor, on the adjusted update
                gA_hat, gB_hat = gA_hat / clip_factor, gB_hat / clip_factor
            # Step 5: decoupled weight decay on A and B, then the update.
            self._apply_update_(g, gA_hat, gB_hat, lr, wd)

    def _adam_and_map_back(
        self, left: Tensor, right: Tensor, A: Tensor, B: Tensor, st: dict, beta1: float, beta2: float, eps: float,
        BtD: Tensor, DAt: Tensor,
    ) -> None:
        """Fold g̃ = left·right into the m×n moments and write BtD = Bᵀ·ĝ, DAt = ĝ·Aᵀ."""
        m, n = left.shape[0], right.shape[1]
        rows = m if A.device.type != "cpu" else max(1, min(m, self._CPU_CHUNK_ELEMS // n))
        gt_buf, dir_buf = self._scratch_rows(rows, n, left.dtype, A.device)
        if self.factored:
            factored_direction_and_map_back(left, right, A, B, st, (beta1, beta2), eps, rows, gt_buf, BtD, DAt)
            return
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        # official_bias_correction: the official code's corrections run one step ahead (t + 1).
        bc_step = st["step"] + 1 if self.official_bias_correction else st["step"]
        BtD.zero_()  # r×n, accumulates Bᵀ·ĝ over row blocks; DAt (m×r) is filled block by block
        At = A.T
        for i in range(0, m, rows):
            j = min(i + rows, m)
            gt, d = gt_buf[: j - i], dir_buf[: j - i]
            torch.mm(left[i:j], right, out=gt)
            self._adam_direction_(gt, d, exp_avg[i:j], exp_avg_sq[i:j], bc_step, beta1, beta2, eps)
            BtD.addmm_(B[i:j].T, d)
            torch.mm(d, At, out=DAt[i:j])

    @staticmethod
    def _adam_direction_(
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
                [out], [gt], [m], [v], [], [step],
                lr=-1.0, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
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


class LoraProSGD(_LoraProBase):
    """SGD with LoRA-Pro's closed-form gradient adjustment (the paper's Algorithm 1).

    A and B step along (ĝA, ĝB) (with heavy-ball momentum on them if momentum > 0);
    every other trainable parameter takes a plain SGD step with the same momentum."""

    def __init__(self, model: nn.Module, lr: float = 1e-3, momentum: float = 0.0, damping: float = 1e-8):
        _check_common(lr, momentum=momentum)
        super().__init__(model, dict(lr=lr, momentum=momentum), damping)

    def _fresh_state(self, p: Tensor) -> dict:
        return {"momentum_buffer": torch.zeros_like(p, dtype=F.compute_dtype(p.dtype))}

    def _update(self) -> None:
        lora, plain = self._lora_group(), self._plain_group()
        for g in self._shape_groups():
            coef = F.projection_coefficients(*g.stats(), g.s, self.damping, solve_x=True)
            gA_hat, gB_hat = F.apply_projection(coef, g.A, g.B, g.gA, g.gB)
            for params, upd in ((g.A_params, gA_hat), (g.B_params, gB_hat)):
                for p, d in zip(params, upd.unbind(0)):
                    self._sgd_(p, d, lora)
        for p in plain["params"]:
            if p.grad is not None:
                self._sgd_(p, p.grad, plain)

    def _sgd_(self, p: Tensor, d: Tensor, group: dict) -> None:
        d = d.to(F.compute_dtype(p.dtype))
        if group["momentum"]:
            st = self.state[p]
            if not st:
                st.update(self._fresh_state(p))
            d = st["momentum_buffer"].mul_(group["momentum"]).add_(d)
        if p.dtype == d.dtype:
            p.add_(d, alpha=-float(group["lr"]))
        else:
            p.copy_(p.to(d.dtype).add_(d, alpha=-float(group["lr"])))
