#!/usr/bin/env python
"""Does full mode's memory option (factored=True) converge like exact full mode?

The task of efficient_diagnosis.py (a 256×128 linear layer fitted to a rank-32 teacher
by MSE, LoRA r=8 α=16), 600 steps with cosine decay, 3 seeds, an LR grid per method.
The classification benchmark could not also afford these runs on the shared CPU.

    python benchmarks/lora_pro/factored_convergence.py      # factored_convergence.json (~2 CPU-minutes)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
from efficient_diagnosis import N_IN, make_model, teacher  # noqa: E402

VARIANTS = {
    "LoRA + AdamW": None,
    "full, exact": dict(mode="full"),
    "full, factored v + bf16 m": dict(mode="full", factored=True, moment_dtype=torch.bfloat16),
    "full, factored v, no m": dict(mode="full", factored=True, betas=(0.0, 0.999)),
}
LRS = (3e-4, 1e-3, 3e-3)
SEEDS = (0, 1, 2)
STEPS = 600


def final_loss(variant, lr: float, seed: int) -> float:
    from hf_clipadapt.lora_pro import LoraProAdamW

    model = make_model(seed)
    w_star = teacher(seed, model.base_model.model[0].base_layer.weight.detach())
    if variant is None:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    else:
        opt = LoraProAdamW(model, lr=lr, **variant)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / STEPS)))
    g = torch.Generator().manual_seed(seed + 2)
    x_eval = torch.randn(1024, N_IN, generator=torch.Generator().manual_seed(999))
    for _ in range(STEPS):
        x = torch.randn(64, N_IN, generator=g)
        nn.functional.mse_loss(model(x), x @ w_star.T).backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x_eval), x_eval @ w_star.T))


def main():
    torch.set_num_threads(1)
    res = {}
    for name, variant in VARIANTS.items():
        res[name] = {}
        for lr in LRS:
            losses = [final_loss(variant, lr, s) for s in SEEDS]
            res[name][f"{lr:g}"] = {"mean": statistics.mean(losses), "std": statistics.stdev(losses), "losses": losses}
            print(
                f"{name:28s} lr {lr:g}: held-out MSE {statistics.mean(losses):.4f} ± {statistics.stdev(losses):.4f}",
                flush=True,
            )
    (HERE / "factored_convergence.json").write_text(
        json.dumps({"steps": STEPS, "seeds": SEEDS, "results": res}, indent=1)
    )


if __name__ == "__main__":
    main()
