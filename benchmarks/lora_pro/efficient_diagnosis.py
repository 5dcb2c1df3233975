#!/usr/bin/env python
"""Why LoRA-Pro's efficient mode did not learn, measured: Adam's second moment of A
and the per-step update norms of A and B over the first steps after PEFT's B = 0 start.

Task: a linear layer W0 (256×128) fitted to a teacher W0 + ΔW* (ΔW* of rank 32, so
no rank-8 adapter fits it exactly) by MSE on Gaussian inputs, LoRA r=8 α=16 via PEFT.
Same init, batches and LR (1e-3, cosine-free) for every method:
  lora                 torch.optim.AdamW on A and B
  efficient-undamped   LoraProAdamW(mode="efficient", b_damping=0)   (the old behaviour)
  efficient            LoraProAdamW(mode="efficient")                (b_damping=1, the default)
  full                 LoraProAdamW(mode="full")

    python benchmarks/lora_pro/efficient_diagnosis.py [--steps 600]

Writes efficient_diagnosis.json and efficient_diagnosis.png next to this file (1 CPU-minute).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

M_OUT, N_IN, R, TEACHER_RANK = 256, 128, 8, 32
METHODS = ("lora", "efficient-undamped", "efficient", "full")


def make_model(seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(N_IN, M_OUT, bias=False))
    return get_peft_model(base, LoraConfig(r=R, lora_alpha=2 * R, target_modules=["0"], lora_dropout=0.0))


def teacher(seed: int, w0: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.randn(M_OUT, TEACHER_RANK, generator=g) / TEACHER_RANK**0.5
    v = torch.randn(TEACHER_RANK, N_IN, generator=g) / N_IN**0.5
    return w0 + u @ v


def make_opt(method: str, model, lr: float):
    from hf_clipadapt.lora_pro import LoraProAdamW

    if method == "lora":
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    if method == "efficient-undamped":
        return LoraProAdamW(model, lr=lr, mode="efficient", b_damping=0.0)
    return LoraProAdamW(model, lr=lr, mode=method)


def second_moment_of_A(opt, A: torch.Tensor) -> float:
    st = opt.state.get(A, {})
    return float(st["exp_avg_sq"].mean()) if "exp_avg_sq" in st else float("nan")


def run(method: str, steps: int, lr: float, seed: int = 0, batch: int = 64) -> dict:
    model = make_model(seed)
    layer = model.base_model.model[0]
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    w_star = teacher(seed, layer.base_layer.weight.detach())
    opt = make_opt(method, model, lr)
    g = torch.Generator().manual_seed(seed + 2)
    log = {k: [] for k in ("loss", "v_A", "dA", "dB", "B_norm")}
    for _ in range(steps):
        x = torch.randn(batch, N_IN, generator=g)
        loss = nn.functional.mse_loss(model(x), x @ w_star.T)
        loss.backward()
        a0, b0 = A.detach().clone(), B.detach().clone()
        opt.step()
        opt.zero_grad(set_to_none=True)
        log["loss"].append(float(loss))
        log["v_A"].append(second_moment_of_A(opt, A))
        log["dA"].append(float((A.detach() - a0).norm()))
        log["dB"].append(float((B.detach() - b0).norm()))
        log["B_norm"].append(float(B.detach().norm()))
    return log


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method, log in results.items():
        steps = range(1, len(log["loss"]) + 1)
        axes[0].semilogy(steps, log["loss"], label=method)
        axes[1].semilogy(steps, log["dA"], label=method)
        if method != "full":  # full mode keeps m×n moments, none shaped like A
            axes[2].semilogy(steps, log["v_A"], label=method)
    for ax, title in zip(axes, ("training loss", "‖ΔA‖ per step", "mean Adam v of A (exp_avg_sq)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def summary(results: dict) -> dict:
    out = {}
    for method, log in results.items():
        n = len(log["loss"])
        out[method] = {
            "v_A_step2": log["v_A"][1],
            "v_A_step100": log["v_A"][min(99, n - 1)],
            "v_A_last": log["v_A"][-1],
            "dA_step2": log["dA"][1],
            "mean_dA_steps_50_100": sum(log["dA"][49:100]) / len(log["dA"][49:100]),
            "loss_last": log["loss"][-1],
            "loss_first": log["loss"][0],
        }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {m: run(m, a.steps, a.lr) for m in METHODS}
    summ = summary(results)
    out = Path(a.out)
    (out / "efficient_diagnosis.json").write_text(json.dumps({"config": vars(a), "summary": summ, "logs": results}))
    plot(results, out / "efficient_diagnosis.png")
    for method, s in summ.items():
        print(method, {k: f"{v:.3g}" for k, v in s.items()})


if __name__ == "__main__":
    main()
