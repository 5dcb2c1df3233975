"""Find the (lora_A, lora_B) pairs of a model by module, never by position.

The official code zips a flat parameter list, which breaks as soon as any other
parameter is trainable; pairing through the PEFT layer object also gives us the
right scaling s = module.scaling[adapter] (rsLoRA, rank/alpha patterns).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from torch import nn

__all__ = ["LoraPair", "find_lora_pairs", "check_not_deepspeed"]


@dataclass(eq=False)
class LoraPair:
    """One adapter of one layer, in LoRA-Pro's layout: A is r×n, B is m×r and
    ΔW = s·B·A. Linear, Conv1D (fan_in_fan_out) and Embedding adapters all store
    their factors this way; they differ only in how ΔW is laid onto the base
    weight (transposed for Conv1D and Embedding), which the math never needs.

    Convolution adapters (nn.Conv1d/2d/3d factors) keep A as (r, in, k...) and B as
    (m, r, 1...): flattened, A is r×(in·k...) and B m×r, and s·B·A is the kernel,
    flattened, of the one convolution that B∘A computes (a 1×1 convolution after A is
    a per-position linear map of A's r channels), with A's kernel size, stride and
    padding. `flat(t)` gives that 2-D view of a factor or of its gradient."""

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

    @property
    def n(self) -> int:
        """Columns of A as a matrix (in·k... for a convolution)."""
        return math.prod(self.A.shape[1:])

    @staticmethod
    def flat(t):
        """A factor (or its gradient, or this rank's shard of it) as a matrix: a view, so
        in-place updates reach the parameter."""
        return t if t.dim() == 2 else t.view(t.shape[0], -1)


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
    """(A, B, A's attribute path, B's) for one adapter of one PEFT LoRA layer.

    For lora_A/lora_B modules the weights are returned whatever the modules are;
    `_unsupported` then says whether LoRA-Pro may train them."""
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


SUPPORTED = (
    "LoRA-Pro trains LoRA adapters whose factors lora_A/lora_B are nn.Linear (PEFT's Linear and GPT-2 "
    "Conv1D layers, and the quantised ones: bitsandbytes 4-bit/8-bit, HQQ, GPTQ, AWQ, torchao, EETQ, ...), "
    "nn.Conv1d/Conv2d/Conv3d with groups=1 (PEFT's convolution LoRA), or Embedding factors "
    "(lora_embedding_A/B)"
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _conv_unsupported(a: nn.Module, b: nn.Module) -> str | None:
    """Why a convolution adapter is not one s·B·A, or None when it is."""
    if type(a) is not type(b):
        return f"its factors are a {type(a).__name__} and a {type(b).__name__}"
    if a.groups != 1 or b.groups != 1:
        return f"its factors are grouped convolutions (groups={b.groups}), whose ΔW is block-diagonal, not one B·A"
    if any(k != 1 for k in b.kernel_size) or any(st != 1 for st in b.stride):
        return f"its lora_B has kernel {b.kernel_size} and stride {b.stride}, not 1×1: B∘A is not one convolution"
    return None


def _unsupported(module: nn.Module, adapter: str) -> str | None:
    """Why this adapter is not a plain ΔW = s·B·A with 2-D factors, or None when it is.

    The pairing looks at the factors, not at the base layer: the LoRA-Pro update
    reads only A, B and the scaling, never the (possibly quantised) base weight."""
    if adapter not in getattr(module, "lora_A", {}):
        return None  # an Embedding adapter: its factors are 2-D parameters
    a, b = module.lora_A[adapter], module.lora_B[adapter]
    if isinstance(a, _CONVS) and isinstance(b, _CONVS):
        return _conv_unsupported(a, b)
    if not (isinstance(a, nn.Linear) and isinstance(b, nn.Linear)):
        kinds = {f"{type(f).__module__}.{type(f).__name__}" for f in (a, b)}
        return f"its factors are {' / '.join(sorted(kinds))}, not nn.Linear or a convolution"
    if getattr(module, "num_experts", 1) != 1:  # peft's ParamWrapper on stacked experts
        return (
            f"it holds {module.num_experts} experts' adapters stacked in one lora_A/lora_B, each expert with "
            "its own ΔW, which is not one B·A"
        )
    return None


def _check_adapter(mod_name: str, module: nn.Module, adapter: str, A: nn.Parameter, B: nn.Parameter) -> None:
    """Refuse, naming the module, an adapter LoRA-Pro cannot train."""
    why = _unsupported(module, adapter)
    if why is not None:
        raise TypeError(
            f"{SUPPORTED}. Module '{mod_name}' is a {type(module).__module__}.{type(module).__name__} "
            f"and {why} (adapter '{adapter}'). Leave it out of target_modules, or train it with another "
            "optimizer."
        )
    if module.r[adapter] == 0 or A.shape[0] == 0:
        raise ValueError(
            f"adapter '{adapter}' of module '{mod_name}' has rank 0; LoRA-Pro needs r ≥ 1. "
            "Give it a positive rank (rank_pattern) or leave the module out of target_modules."
        )
    if A.dim() < 2 or B.dim() < 2:
        raise TypeError(
            f"module '{mod_name}' (adapter '{adapter}') has factors of shape {tuple(A.shape)}, "
            f"{tuple(B.shape)}; LoRA-Pro needs matrix (or convolution) factors. Flattened parameters mean DeepSpeed ZeRO "
            "or FSDP1 (FullyShardedDataParallel with flat parameters) owns them. Use FSDP2 "
            f"(fully_shard; Accelerate fsdp_version: 2, or Trainer {FSDP2_TRAINER_ARGS}), DDP, "
            "or one device (QLoRA, load_in_4bit, for large models)."
        )


def _untied_ids(pairs: list[LoraPair], names_of: dict[int, list[str]]) -> set[int]:
    """ids of every LoRA factor; refuses a factor reachable under two names or in two pairs."""
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
    return lora_ids


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
            _check_adapter(mod_name, module, adapter, A, B)
            prefix = f"{mod_name}." if mod_name else ""
            pairs.append(LoraPair(mod_name, adapter, module, A, B, prefix + a_attr, prefix + b_attr))

    if not pairs:
        raise ValueError(
            "LoRA-Pro found no trainable LoRA layer in this model. Wrap it first with "
            "peft.get_peft_model(model, LoraConfig(...)) (or LoraProConfig), and check that target_modules match."
        )

    lora_ids = _untied_ids(pairs, names_of)
    plain = [
        (name, p)
        for name, p in model.named_parameters()  # de-duplicated: a tied plain weight is stepped once
        if p.requires_grad and id(p) not in lora_ids
    ]
    return pairs, plain


# Computed (benchmarks/lora_pro/large_models.py; tests/lora_pro/test_large_models.py checks these
# against it): GiB per GPU for Llama-2-7B, LoRA r=8 on every linear layer, activations excluded.
LLAMA2_7B_GIB = {"fsdp2_full": {2: 31.6, 4: 16.2, 8: 8.5}, "qlora_factored": 17.1, "qlora_efficient": 4.4}
FSDP2_TRAINER_ARGS = 'fsdp=True, fsdp_config={"version": 2, "state_dict_type": "SHARDED_STATE_DICT"}'

DEEPSPEED_REFUSAL = (
    "LoRA-Pro does not run under DeepSpeed ZeRO: ZeRO gives the optimizer flattened parameter partitions, so "
    "the 2-D LoRA factors it needs are gone (the authors patched DeepSpeed to see them; this package does "
    "not patch it). Remove the `deepspeed` config and use FSDP2 instead, which shards LoRA-Pro's m×n moments "
    "by rows over the GPUs as ZeRO shards optimizer state: "
    "`accelerate launch --config_file examples/lora_pro_fsdp2.yaml --num_processes N your_script.py` "
    "(distributed_type: FSDP, fsdp_version: 2, fsdp_state_dict_type: SHARDED_STATE_DICT), or with Trainer "
    f"`TrainingArguments(..., {FSDP2_TRAINER_ARGS})`; LoraProTrainer and LoraProOptimizerFactory work unchanged. "
    "Expected memory per GPU for Llama-2-7B in full mode (LoRA r=8 on all linear layers, bf16 base, computed, "
    "activations excluded): "
    + ", ".join(f"{g} GiB on {n} GPUs" for n, g in LLAMA2_7B_GIB["fsdp2_full"].items())
    + ". On one GPU: a 4-bit (QLoRA) base model, from_pretrained(..., quantization_config="
    'BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")) and peft.prepare_model_for_kbit_training, '
    f'with factored=True ({LLAMA2_7B_GIB["qlora_factored"]} GiB) or mode="efficient" '
    f"({LLAMA2_7B_GIB['qlora_efficient']} GiB). A plain optimizer such as AdamW still works with DeepSpeed, "
    "without LoRA-Pro."
)


def check_not_deepspeed(active: bool = False) -> None:
    """DeepSpeed ZeRO hands the optimizer flat fp32 partitions, so LoRA-Pro would
    never see the 2-D A and B it needs. Refuse early, naming the routes that work
    (FSDP2 on several GPUs, with its Accelerate config and Trainer arguments; QLoRA on one).
    `active=True` refuses unconditionally (callers that already know, e.g. Trainer)."""
    active = active or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        active = active or is_deepspeed_zero3_enabled()
    except ImportError:  # transformers is optional for the bare optimizer
        pass
    if active:
        raise RuntimeError(DEEPSPEED_REFUSAL)
