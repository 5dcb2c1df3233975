#!/usr/bin/env python
"""Memory per GPU for LoRA-Pro on Llama-2-7B, route by route: COMPUTED from the shapes,
not measured (no GPU was lent). LoRA r=8 on every linear layer of every block (q, k, v,
o, gate, up, down), as in memory.py, whose measured optimizer-state bytes these formulas
reproduce exactly (tests/lora_pro/test_large_models.py checks it).

Counted: the base weights, the LoRA factors and their gradients (float32, PEFT's default
for adapters), the optimizer state, full mode's scratch (two row blocks per distinct
shape; a GPU takes all of a rank's rows at once), and for FSDP2 the all-gather buffers
of two decoder blocks (the one computing and the one prefetched). Not counted: activations (they depend
on batch and sequence length; gradient checkpointing keeps them small), the CUDA context
(~0.5 GiB) and allocator slack.

    python benchmarks/lora_pro/large_models.py     # prints the table, writes large_models.json
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 2**30

# Llama-2-7B: hidden 4096, MLP 11008, 32 blocks, vocabulary 32000, untied head.
HIDDEN, MLP, BLOCKS, VOCAB, RANK = 4096, 11008, 32, 32000, 8
# (out m, in n) of every linear layer of one block
LINEARS = [(HIDDEN, HIDDEN)] * 4 + [(MLP, HIDDEN)] * 2 + [(HIDDEN, MLP)]
NORMS_PER_BLOCK = 2 * HIDDEN
# bitsandbytes nf4 with double quantisation: 4 bits + an 8-bit absmax per 64 weights
# + a float32 constant per 256 absmax values.
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)


def counts() -> dict:
    linear = BLOCKS * sum(m * n for m, n in LINEARS)
    return {
        "linear": linear,
        "embed_and_head": 2 * VOCAB * HIDDEN,
        "norms": BLOCKS * NORMS_PER_BLOCK + HIDDEN,
        "block": sum(m * n for m, n in LINEARS) + NORMS_PER_BLOCK,
        "lora": BLOCKS * sum(RANK * (m + n) for m, n in LINEARS),
        "mn": BLOCKS * sum(m * n for m, n in LINEARS),  # Σ m·n over adapted matrices
        "m_plus_n": BLOCKS * sum(m + n for m, n in LINEARS),
    }


def optimizer_state_bytes(variant: str) -> int:
    """LoRA-Pro's optimizer state for the whole model (memory.py measures the same)."""
    c = counts()
    return {
        "LoRA + AdamW": 8 * c["lora"],
        "full, fp32 moments": 8 * c["mn"],
        "full, bf16 moments": 4 * c["mn"],
        "full, factored v + bf16 m": 2 * c["mn"] + 4 * c["m_plus_n"],
        "full, factored v, no m": 4 * c["m_plus_n"],
        "efficient": 8 * c["lora"],
    }[variant]


def scratch_bytes(variant: str, world: int = 1) -> float:
    """Full mode's float32 scratch on a GPU: two blocks of a rank's m/world rows × n per distinct shape."""
    if not variant.startswith("full"):
        return 0
    return sum(2 * 4 * (m / world) * n for m, n in set(LINEARS))


def routes(world_sizes=(2, 4, 8)) -> list[dict]:
    c = counts()
    lora = 8 * c["lora"]  # float32 factors + float32 gradients
    qlora_base = c["linear"] * NF4_BITS / 8 + 4 * (c["embed_and_head"] + c["norms"])  # kbit prep: rest in fp32
    bf16_base = 2 * (c["linear"] + c["embed_and_head"] + c["norms"])
    rows = []
    for variant in (
        "LoRA + AdamW",
        "full, fp32 moments",
        "full, bf16 moments",
        "full, factored v + bf16 m",
        "full, factored v, no m",
        "efficient",
    ):
        state = optimizer_state_bytes(variant) + scratch_bytes(variant)
        rows.append(dict(route="1 GPU, QLoRA (nf4)", variant=variant, gpus=1, bytes_per_gpu=qlora_base + lora + state))
    for variant in ("LoRA + AdamW", "full, fp32 moments", "full, factored v + bf16 m", "efficient"):
        state = optimizer_state_bytes(variant)
        rows.append(
            dict(
                route="DDP, bf16 base",
                variant=variant,
                gpus="any",
                bytes_per_gpu=bf16_base + lora + state + scratch_bytes(variant),
            )
        )
        for n in world_sizes:
            gathered = 2 * 2 * c["block"]  # two bf16 blocks unsharded at a time
            rows.append(
                dict(
                    route="FSDP2, bf16 base",
                    variant=variant,
                    gpus=n,
                    bytes_per_gpu=(bf16_base + lora + state) / n + gathered + scratch_bytes(variant, n),
                )
            )
    # For comparison only (LoRA-Pro refuses DeepSpeed): the authors' patched ZeRO-2 shards
    # gradients and optimizer state, never the base weights.
    for n in world_sizes:
        state = optimizer_state_bytes("full, fp32 moments")
        rows.append(
            dict(
                route="authors' DeepSpeed ZeRO-2 (not supported here)",
                variant="full, fp32 moments",
                gpus=n,
                bytes_per_gpu=bf16_base + (lora + state) / n + scratch_bytes("full", n),
            )
        )
    return rows


def main() -> None:
    out = {
        "computed": True,
        "model": "Llama-2-7B, LoRA r=8 on all linear layers",
        "counts": counts(),
        "optimizer_state_bytes": {
            v: optimizer_state_bytes(v)
            for v in (
                "LoRA + AdamW",
                "full, fp32 moments",
                "full, bf16 moments",
                "full, factored v + bf16 m",
                "full, factored v, no m",
                "efficient",
            )
        },
        "routes": routes(),
    }
    (HERE / "large_models.json").write_text(json.dumps(out, indent=1))
    for r in out["routes"]:
        print(f"{r['route']:46s} {str(r['gpus']):>4s} GPU(s)  {r['variant']:28s} {r['bytes_per_gpu'] / GIB:7.1f} GiB")


if __name__ == "__main__":
    main()
