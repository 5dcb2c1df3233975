"""Find the (lora_A, lora_B) pairs of a model by module, never by position.

The official code zips a flat parameter list, which breaks as soon as any other
parameter is trainable; pairing through the PEFT layer object also gives us the
right scaling s = module.scaling[adapter] (rsLoRA, rank/alpha patterns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

__all__ = ["LoraPair", "find_lora_pairs", "check_not_deepspeed"]


@dataclass(eq=False)
class LoraPair:
    """One adapter of one layer, in LoRA-Pro's layout: A is r×n, B is m×r and
    ΔW = s·B·A. Linear, Conv1D (fan_in_fan_out) and Embedding adapters all store
    their factors this way; they differ only in how ΔW is laid onto the base
    weight (transposed for Conv1D and Embedding), which the math never needs."""

    module_name: str
    adapter: str
    module: nn.Module
    A: nn.Parameter
    B: nn.Parameter
    a_name: str
    b_name: str

    @property
    def scaling(self) -> float:
        # Read at every step: set_scale/scale_layer may change it during training.
        return float(self.module.scaling[self.adapter])

    @property
    def rank(self) -> int:
        return self.A.shape[0]


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP/accelerate wrappers prefix every name with "module." and torch.compile
    # with "_orig_mod."; state must be keyed by the names of the unwrapped model.
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _lora_factors(module: nn.Module, adapter: str) -> tuple[nn.Parameter, nn.Parameter, str, str] | None:
    """(A, B, A's attribute path, B's) for one adapter of one PEFT LoRA layer."""
    if adapter in getattr(module, "lora_A", {}):
        a, b = module.lora_A[adapter], module.lora_B[adapter]
        return a.weight, b.weight, f"lora_A.{adapter}.weight", f"lora_B.{adapter}.weight"
    if adapter in getattr(module, "lora_embedding_A", {}):
        return (
            module.lora_embedding_A[adapter],
            module.lora_embedding_B[adapter],
            f"lora_embedding_A.{adapter}",
            f"lora_embedding_B.{adapter}",
        )
    return None


def find_lora_pairs(model: nn.Module) -> tuple[list[LoraPair], list[tuple[str, nn.Parameter]]]:
    """Every trainable LoRA pair of `model`, and every other trainable (name, param).

    Raises TypeError for LoRA layer types LoRA-Pro does not support (naming the
    module), ValueError for no LoRA layers, rank 0, or a LoRA factor that is
    reachable under two names (tied/shared factors would be updated twice)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"LoRA-Pro optimizers take the model itself (a PeftModel or an nn.Module with PEFT LoRA layers), "
            f"got {type(model).__name__}. Pass `model`, not `model.parameters()`."
        )
    from peft.tuners.lora import Embedding as LoraEmbedding
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    model = _unwrap(model)
    names_of: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), []).append(name)

    pairs: list[LoraPair] = []
    for mod_name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        adapters = sorted(set(getattr(module, "r", {})))
        for adapter in adapters:
            factors = _lora_factors(module, adapter)
            if factors is None:
                continue
            A, B, a_attr, b_attr = factors
            if not (A.requires_grad or B.requires_grad):
                continue  # frozen/inactive adapter: not ours to train
            if not isinstance(module, (LoraLinear, LoraEmbedding)):
                raise TypeError(
                    f"LoRA-Pro supports LoRA on Linear, GPT-2 Conv1D and Embedding layers; module "
                    f"'{mod_name}' is a {type(module).__module__}.{type(module).__name__} (adapter '{adapter}'). "
                    "Leave it out of target_modules, or train it with another optimizer."
                )
            if module.r[adapter] == 0 or A.shape[0] == 0:
                raise ValueError(
                    f"adapter '{adapter}' of module '{mod_name}' has rank 0; LoRA-Pro needs r ≥ 1. "
                    "Give it a positive rank (rank_pattern) or leave the module out of target_modules."
                )
            if A.dim() != 2 or B.dim() != 2:
                raise TypeError(
                    f"module '{mod_name}' (adapter '{adapter}') has factors of shape {tuple(A.shape)}, "
                    f"{tuple(B.shape)}; LoRA-Pro needs 2-D factors. Flattened parameters mean DeepSpeed ZeRO "
                    "or FSDP owns them, which LoRA-Pro does not support: use DDP instead."
                )
            prefix = f"{mod_name}." if mod_name else ""
            pairs.append(LoraPair(mod_name, adapter, module, A, B, prefix + a_attr, prefix + b_attr))

    if not pairs:
        raise ValueError(
            "LoRA-Pro found no trainable LoRA layer in this model. Wrap it first with "
            "peft.get_peft_model(model, LoraConfig(...)) (or LoraProConfig), and check that target_modules match."
        )

    lora_ids: set[int] = set()
    for pair in pairs:
        for p in (pair.A, pair.B):
            names = names_of.get(id(p), [])
            if id(p) in lora_ids or len(names) > 1:
                raise ValueError(
                    f"parameter {names or [pair.a_name]} appears twice among the model's LoRA factors "
                    "(tied or shared adapter weights). LoRA-Pro updates each factor from its own pair, so it would "
                    "apply two different updates to one tensor; untie the adapter weights."
                )
            lora_ids.add(id(p))

    plain = [
        (name, p)
        for name, p in model.named_parameters()  # de-duplicated: a tied plain weight is stepped once
        if p.requires_grad and id(p) not in lora_ids
    ]
    return pairs, plain


def check_not_deepspeed(active: bool = False) -> None:
    """DeepSpeed ZeRO hands the optimizer flat fp32 partitions, so LoRA-Pro would
    never see the 2-D A and B it needs. Refuse early with what does work.
    `active=True` refuses unconditionally (callers that already know, e.g. Trainer)."""
    active = active or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        active = active or is_deepspeed_zero3_enabled()
    except ImportError:  # transformers is optional for the bare optimizer
        pass
    if active:
        raise RuntimeError(
            "LoRA-Pro does not run under DeepSpeed ZeRO: ZeRO gives the optimizer flattened parameter "
            "partitions, so the 2-D LoRA factors it needs are gone. Supported: single device, DDP (accelerate "
            "launch / torchrun without a DeepSpeed config), gradient accumulation, bf16/fp16 autocast. "
            "Remove the `deepspeed` config (or use a plain optimizer such as AdamW with DeepSpeed)."
        )
