"""LoRA-Pro optimizer state dicts keyed by parameter name (as in model.named_parameters()),
so a checkpoint survives any change in parameter order. Under FSDP2 the moments are
DTensors sharded by rows, which torch.distributed.checkpoint saves and loads rank by rank."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from .sharded import local

__all__ = ["NamedStateDictMixin", "FORMAT"]

FORMAT = 1
META_KEY = "lorapro_meta"


def _same_layout(v: Tensor, ref: Tensor) -> Tensor:
    """`v` laid out like `ref`: a whole tensor becomes this rank's rows of a sharded
    `ref` (a one-device checkpoint resumed under FSDP2), a DTensor becomes whole."""
    from .sharded import _dtensor_type

    DTensor = _dtensor_type()
    if DTensor is None or isinstance(v, DTensor) == isinstance(ref, DTensor):
        return v
    if isinstance(v, DTensor):
        return v.full_tensor()
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(v.to(ref.device), ref.device_mesh, ref.placements, src_data_rank=None)


class NamedStateDictMixin:
    """state_dict / load_state_dict for optimizers that know each parameter's name
    (`self._names`, id → name) and build fresh state with `self._fresh_state(p)`."""

    def _extra_meta(self) -> dict:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State keyed by parameter name (as in model.named_parameters()), so a
        checkpoint survives any change in parameter order."""
        self._sync_params()
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st:
                    state[self._names[id(p)]] = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in st.items()}
        meta = {"format": FORMAT, "optimizer": type(self).__name__, **self._extra_meta()}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k not in ("params", META_KEY)}
            g["params"] = [self._names[id(p)] for p in group["params"]]
            # Also in each group: torch.distributed.checkpoint.state_dict (Accelerate's FSDP2
            # checkpoints) keeps only "state" and "param_groups".
            g[META_KEY] = dict(meta)
            groups.append(g)
        return {"state": state, "param_groups": groups, "lorapro": meta}

    def _by_name(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint keyed by parameter name. torch.distributed.checkpoint.state_dict's
        get/set_optimizer_state_dict hand the state over keyed by position in param_groups
        (ints, or their decimal strings with full_state_dict=True); names and positions refer
        to the same parameters."""
        order = [self._names[id(p)] for g in self.param_groups for p in g["params"]]
        known = set(order)

        def name(key):
            if isinstance(key, str) and key.isdigit() and key not in known:  # full_state_dict=True turns them to str
                key = int(key)
            return order[key] if isinstance(key, int) and 0 <= key < len(order) else key

        groups = [{**g, "params": [name(k) for k in g["params"]]} for g in state_dict["param_groups"]]
        meta = state_dict.get("lorapro") or next((g.get(META_KEY) for g in groups if g.get(META_KEY)), None)
        return {"state": {name(k): v for k, v in state_dict["state"].items()}, "param_groups": groups, "lorapro": meta}

    def _check_meta(self, meta: dict | None) -> None:
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

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._sync_params()
        state_dict = self._by_name(state_dict)
        self._check_meta(state_dict.get("lorapro"))
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
            group.update({k: v for k, v in saved.items() if k not in ("params", META_KEY)})
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
                v = v.to(device=local(p).device, dtype=dtype)
                v = (_same_layout(v, ref) if ref is not None else v).clone()
            out[k] = v
        return out

    def _fresh_state(self, p: Tensor) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError
