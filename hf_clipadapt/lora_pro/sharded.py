"""LoRA-Pro under FSDP2 (`torch.distributed.fsdp.fully_shard`): the moments sharded by rows.

FSDP2 turns every parameter into a DTensor sharded on dim 0 (`Shard(0)` on a 1-D device
mesh, rows split as `torch.chunk` splits them), and gives the optimizer gradients
sharded the same way, already averaged over the ranks. For one LoRA pair (A r×n,
B m×r) a rank then holds some rows of A, gA, B and gB. LoRA-Pro needs:

- A and gA whole (r×n, small): gathered from every rank;
- the r×r products BᵀB and BᵀgB, and later Bᵀĝ (r×n) and Bᵀ·gB': sums over the rows
  of B, so each rank forms its rows' part and the parts are all-reduced;
- everything m×n (g̃, the Adam moments, the direction ĝ) row by row: the rows of
  g̃ = [B, ĝB]·s·[ĝA; A] are the local rows of B and ĝB times the gathered right factor.

So a rank keeps the moments' rows that match its rows of B (1/world of them), and the
result is single-process LoRA-Pro's up to the order of the sums. The extra traffic per
pair and step is O(r·n + r²): two gathers of r×n, one all-reduce of r×n and two of r×r.

`ShardSpec` is None on one device (or under DDP), and then every helper is a no-op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ShardSpec", "shard_spec", "local", "sharded_like", "local_nbytes"]


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return None
    return DTensor


def local(t: Tensor | None) -> Tensor | None:
    """This rank's part of a DTensor (sharing its storage), or `t` itself."""
    DTensor = _dtensor_type()
    if DTensor is not None and isinstance(t, DTensor):
        return t.to_local()
    return t


def local_nbytes(t: Tensor) -> int:
    """Bytes this rank holds for `t` (its local shard for a DTensor)."""
    t = local(t)
    return t.numel() * t.element_size()


FSDP2_ONLY = (
    "LoRA-Pro shards its moments the way FSDP2 (torch.distributed.fsdp.fully_shard) shards parameters: "
    "every trainable parameter a DTensor with placement Shard(0) on one 1-D device mesh. "
)


@dataclass(frozen=True)
class ShardSpec:
    """The 1-D device mesh the LoRA factors are sharded on (rows, `torch.chunk` style)."""

    mesh: object
    rank: int
    world: int

    @property
    def group(self):
        return self.mesh.get_group()

    def rows(self, total: int) -> tuple[int, int]:
        """[start, stop) of the rows of a dim-0 size `total` that this rank holds."""
        chunk = math.ceil(total / self.world) if total else 0
        start = min(self.rank * chunk, total)
        return start, min(start + chunk, total)

    def all_reduce_(self, t: Tensor) -> Tensor:
        """Sum `t` over the ranks, in place (contiguous tensors only)."""
        import torch.distributed as dist

        dist.all_reduce(t, group=self.group)
        return t

    def gather_rows(self, t: Tensor, total: int) -> Tensor:
        """Stack every rank's rows (dim -2 of `t`, this rank's part) into the `total` rows."""
        import torch.distributed as dist

        chunk = math.ceil(total / self.world)
        pad = chunk - t.shape[-2]
        if pad:
            t = torch.cat([t, t.new_zeros(t.shape[:-2] + (pad, t.shape[-1]))], dim=-2)
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.cat(parts, dim=-2)[..., :total, :]


def shard_spec(params: list[Tensor]) -> ShardSpec | None:
    """The ShardSpec of FSDP2-sharded parameters; None when none is a DTensor.

    Refuses anything else that is a DTensor (HSDP's 2-D mesh, tensor parallelism,
    a mix of sharded and plain parameters, several meshes), naming what works."""
    DTensor = _dtensor_type()
    sharded = [p for p in params if DTensor is not None and isinstance(p, DTensor)]
    if not sharded:
        return None
    from torch.distributed.tensor import Shard

    if len(sharded) != len(params):
        raise TypeError(
            FSDP2_ONLY + f"{len(params) - len(sharded)} of {len(params)} trainable parameters are plain tensors. "
            "Apply fully_shard to the root module too (it shards what no inner call did) before building the "
            "optimizer."
        )
    mesh = sharded[0].device_mesh
    for p in sharded:
        if p.device_mesh != mesh or p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
            raise TypeError(
                FSDP2_ONLY + f"A parameter has placements {tuple(p.placements)} on a {p.device_mesh.ndim}-D mesh "
                "(HSDP, tensor parallelism or two meshes), which LoRA-Pro does not support: use fully_shard "
                "with a 1-D mesh (Accelerate: fsdp_version 2 without HSDP), or DDP."
            )
    return ShardSpec(mesh, mesh.get_local_rank(), mesh.size())


def sharded_like(local_t: Tensor, spec: ShardSpec | None, global_shape: tuple[int, ...]) -> Tensor:
    """`local_t` (this rank's rows) as a DTensor of `global_shape` sharded on dim 0,
    so that torch.distributed.checkpoint saves and loads each rank's rows; `local_t`
    itself when not sharded."""
    if spec is None:
        return local_t
    from torch.distributed.tensor import DTensor, Shard

    stride = torch.empty(global_shape, device="meta").stride()
    return DTensor.from_local(local_t, spec.mesh, [Shard(0)], run_check=False, shape=global_shape, stride=stride)
