"""What every LoRA-Pro optimizer shares: the pairs found by module, their stacking into
shape groups (so the closed form's small ops run batched), the non-finite-gradient skip,
the update of A and B, and the link to the parameters FSDP2 swaps in after the
optimizer is built (sharded.py)."""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import functional
from .checks import warn_if_classifier_frozen
from .pairs import LoraPair, check_not_deepspeed, find_lora_pairs
from .sharded import ShardSpec, local, shard_spec
from .state_dict import NamedStateDictMixin

__all__ = ["LoraProBase", "ShapeGroup"]


@dataclass(eq=False)
class ShapeGroup:
    """Pairs of one shape, stacked in the compute dtype (float32, or float64 for float64):
    A and gA (G, r, n) whole, B and gB (G, m, r) as this rank holds them (all m rows
    unless FSDP2 shards them), and s (G,). `a_rows` are the rows of A this rank updates."""

    pairs: list[LoraPair]
    A: Tensor
    B: Tensor
    gA: Tensor
    gB: Tensor
    s: Tensor
    spec: ShardSpec | None = None
    a_rows: tuple[int, int] = (0, 0)

    @classmethod
    def build(cls, members: list[tuple[LoraPair, tuple[Tensor, Tensor]]], spec: ShardSpec | None) -> ShapeGroup:
        pairs = [p for p, _ in members]
        dt = functional.compute_dtype(pairs[0].A.dtype)

        def stack(ts):
            return torch.stack([LoraPair.flat(local(t)) for t in ts]).to(dt)

        A, gA = stack([p.A.detach() for p in pairs]), stack([g[0] for _, g in members])
        r = pairs[0].A.shape[0]
        a_rows = (0, r)
        if spec is not None:  # A and gA are r×n: gather every rank's rows
            a_rows = spec.rows(r)
            A, gA = spec.gather_rows(torch.cat([A, gA]), r).chunk(2)
        s = torch.tensor([p.scaling for p in pairs], dtype=dt, device=A.device)
        return cls(
            pairs, A, stack([p.B.detach() for p in pairs]), gA, stack([g[1] for _, g in members]), s, spec, a_rows
        )

    @property
    def A_params(self) -> list[Tensor]:
        """This rank's part of each A, as a matrix (a view of the parameter)."""
        return [LoraPair.flat(local(p.A)) for p in self.pairs]

    @property
    def B_params(self) -> list[Tensor]:
        return [LoraPair.flat(local(p.B)) for p in self.pairs]

    def own_rows(self, t: Tensor) -> Tensor:
        """The rows of an r×n (batched) tensor that this rank's shard of A holds."""
        return t[..., self.a_rows[0] : self.a_rows[1], :]

    def all_reduce_(self, t: Tensor) -> Tensor:
        """Sum over the ranks' rows of B (FSDP2); identity on one device."""
        return self.spec.all_reduce_(t) if self.spec is not None else t

    def stats(self, gA: Tensor | None = None, gB: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """BᵀB, AAᵀ, gA·Aᵀ, Bᵀ·gB: the r×r inputs of the closed form (the group's own
        gradients unless others are given). The two sums over B's rows are all-reduced."""
        A, B = self.A, self.B
        gA = self.gA if gA is None else gA
        gB = self.gB if gB is None else gB
        BtB, BtgB = self.all_reduce_(torch.stack([B.mT @ B, B.mT @ gB])).unbind(0)
        return BtB, A @ A.mT, gA @ A.mT, BtgB


class LoraProBase(NamedStateDictMixin, torch.optim.Optimizer):
    """Pair discovery, non-finite-gradient skip, name-keyed state dicts."""

    def __init__(self, model: nn.Module, defaults: dict[str, Any], damping: float):
        check_not_deepspeed()
        if not (isinstance(damping, (int, float)) and damping >= 0):
            raise ValueError(f"damping must be a number ≥ 0 (the official code uses 1e-8), got {damping!r}.")
        self.damping = float(damping)
        pairs, plain = find_lora_pairs(model)
        warn_if_classifier_frozen(model)
        self._pairs: list[LoraPair] = pairs
        self._plain_names = [n for n, _ in plain]
        groups = [
            {"params": [t for p in pairs for t in (p.A, p.B)], "lorapro": True},
            # Always present (maybe empty) so group indices are stable across models.
            {"params": [p for _, p in plain], "lorapro": False},
        ]
        super().__init__(groups, defaults)
        self._groups_fixed = True
        self._bound: list[Tensor] = []
        self._sync_params()

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

    def _sync_params(self) -> None:
        """Follow the parameters in param_groups. Accelerate (and Trainer) build the optimizer
        before FSDP2 wraps the model, then swap the sharded parameters into param_groups
        position by position (accelerate's fsdp2_switch_optimizer_parameters); the pairs,
        the names and any state move to the new tensors here."""
        current = [p for g in self.param_groups for p in g["params"]]
        if len(current) == len(self._bound) and all(a is b for a, b in zip(current, self._bound)):
            return
        lora = self._lora_group()["params"]
        if len(lora) != 2 * len(self._pairs):
            raise RuntimeError(f"{type(self).__name__}: its LoRA parameter group changed size; rebuild the optimizer.")
        moved = {id(old): new for old, new in zip(self._bound, current)}
        self.state = defaultdict(dict, {moved.get(id(p), p): st for p, st in self.state.items()})
        self._pairs = [dataclasses.replace(p, A=lora[2 * i], B=lora[2 * i + 1]) for i, p in enumerate(self._pairs)]
        self._names = {id(p.A): p.a_name for p in self._pairs}
        self._names.update({id(p.B): p.b_name for p in self._pairs})
        self._names.update({id(p): n for n, p in zip(self._plain_names, self._plain_group()["params"])})
        self._pair_of_A = {id(p.A): p for p in self._pairs}
        self._shards = shard_spec(current)
        self._bound = current

    # ----------------------------------------------------------------- helpers
    @property
    def lora_pairs(self) -> list[LoraPair]:
        """The (A, B) pairs this optimizer found, with their module names."""
        self._sync_params()
        return list(self._pairs)

    def _all_grads(self) -> list[Tensor]:
        """This rank's part of every gradient."""
        return [local(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._sync_params()
        if not self._grads_finite():
            return loss
        self._update()
        return loss

    def _update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grads_finite(self) -> bool:
        grads = [g for g in self._all_grads() if g.numel()]
        finite = True
        if grads:
            # ∞-norm propagates NaN and cannot overflow; one foreach pass, one sync.
            norms = torch._foreach_norm(grads, float("inf"))
            dev = norms[0].device
            finite = bool(torch.stack([n.to(device=dev, dtype=torch.float32) for n in norms]).isfinite().all())
        if self._shards is not None:  # every rank must skip, or none
            flag = torch.tensor([0.0 if finite else 1.0])
            finite = not bool(self._shards.all_reduce_(flag).item())
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
        gA = torch.zeros_like(local(pair.A)) if gA is None else local(gA)
        gB = torch.zeros_like(local(pair.B)) if gB is None else local(gB)
        return gA, gB

    def _shape_groups(self) -> list[ShapeGroup]:
        """Pairs that received gradients, stacked by (m, n, r, dtype, device), so
        that every small op of the closed form runs once per group, batched."""
        buckets: dict[tuple, list] = defaultdict(list)
        for pair in self._pairs:
            grads = self._pair_grads(pair)
            if grads is not None:
                key = (
                    tuple(pair.A.shape),
                    tuple(pair.B.shape),
                    tuple(local(pair.B).shape),
                    pair.A.dtype,
                    pair.B.dtype,
                    pair.A.device,
                )
                buckets[key].append((pair, grads))
        return [ShapeGroup.build(members, self._shards) for members in buckets.values()]

    @staticmethod
    def _apply_update_(group: ShapeGroup, gA_hat: Tensor, gB_hat: Tensor, lr: float, wd: float) -> None:
        """A ← A·(1 − lr·wd) − lr·ĝA, B likewise (decoupled decay, trainable factors only),
        on the rows this rank holds."""
        own_A, own_gA = group.own_rows(group.A), group.own_rows(gA_hat)
        for params, cur, upd in ((group.A_params, own_A, own_gA), (group.B_params, group.B, gB_hat)):
            if params[0].dtype == cur.dtype:
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
                torch._foreach_add_(params, list(upd.unbind(0)), alpha=-lr)
            else:  # low-precision parameters: update in float32, round once
                new = cur.mul(1 - lr * wd).add_(upd, alpha=-lr)
                for p, v in zip(params, new.unbind(0)):
                    p.copy_(v)
