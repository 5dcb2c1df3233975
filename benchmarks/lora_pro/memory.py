#!/usr/bin/env python
"""Optimizer-state memory of LoRA-Pro's full mode, exact vs the memory option (factored=True),
measured as the bytes of the tensors the optimizer keeps after one step.

Each distinct adapted shape of a model is built once (an nn.Linear with a PEFT LoRA
r=8 adapter), stepped once, and its state is counted; the model total multiplies by
how often the shape occurs (LoRA on every linear layer of every decoder block).

    python benchmarks/lora_pro/memory.py        # writes memory.json next to this file (~1 CPU-minute)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

# (in, out, count per block) for q, k, v, o, gate, up, down; grouped-query k/v are narrower.
MODELS = {
    "SmolLM2-135M (30 blocks)": dict(blocks=30, shapes=[(576, 576, 2), (576, 192, 2), (576, 1536, 2), (1536, 576, 1)]),
    "Llama-2-7B (32 blocks)": dict(blocks=32, shapes=[(4096, 4096, 4), (4096, 11008, 2), (11008, 4096, 1)]),
}
VARIANTS = {
    "LoRA + AdamW (reference)": None,
    "full, exact fp32 moments": dict(mode="full"),
    "full, bf16 moments": dict(mode="full", moment_dtype=torch.bfloat16),
    "full, factored v + bf16 m": dict(mode="full", factored=True, moment_dtype=torch.bfloat16),
    "full, factored v, no m (beta1=0)": dict(mode="full", factored=True, betas=(0.0, 0.999)),
    "efficient": dict(mode="efficient"),
}


def state_bytes(opt) -> int:
    return sum(
        v.numel() * v.element_size()
        for st in opt.state.values()
        for k, v in st.items()
        if isinstance(v, torch.Tensor) and k != "step"
    )


def one_shape(n_in: int, n_out: int, variant: dict | None) -> int:
    from peft import LoraConfig, get_peft_model

    from hf_clipadapt.lora_pro import LoraProAdamW

    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(n_in, n_out, bias=False)), LoraConfig(r=8, lora_alpha=16, target_modules=["0"])
    )
    if variant is None:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    else:
        opt = LoraProAdamW(model, lr=1e-3, **variant)
    model(torch.randn(2, n_in)).sum().backward()
    opt.step()
    out = state_bytes(opt)
    del model, opt
    return out


def main():
    torch.set_num_threads(1)
    results = {}
    for model_name, spec in MODELS.items():
        results[model_name] = {}
        for vname, variant in VARIANTS.items():
            total = sum(one_shape(i, o, variant) * c * spec["blocks"] for i, o, c in spec["shapes"])
            results[model_name][vname] = total
            print(f"{model_name:28s} {vname:36s} {total / 2**20:10.1f} MiB", flush=True)
    (HERE / "memory.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
