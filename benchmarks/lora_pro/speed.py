#!/usr/bin/env python
"""Optimizer-step speed, train-step overhead and optimizer-state memory of LoRA-Pro.

Side by side in ONE process, interleaved repeats, medians:
  - LoRA + AdamW (torch fused AdamW, Trainer's default `adamw_torch_fused`)
  - hf_clipadapt LoraProAdamW, mode="full" (fp32 moments, and bf16 moments)
  - hf_clipadapt LoraProAdamW, mode="efficient"
  - lora-pro-adamw 0.2.1 (PyPI) LoRAProAdamW, lorapro_mode="full" and "efficient"

Settings
  (a) SmolLM2-135M widths: a randomly initialised LlamaConfig with SmolLM2-135M's sizes
      (hidden 576, MLP 1536, 9 heads / 3 KV heads, vocab 49152, tied embeddings) and
      --layers layers (30 = the real model), LoRA r=8 alpha=16 on every linear layer,
      256 rows (tokens) a batch.
  (b) Llama-2-7B MLP widths: up 4096→11008, down 11008→4096, LoRA r=8 on both, 256 rows.
  (c) optimizer-state bytes for each (sum of the state tensors' sizes), plus persistent
      scratch buffers where an implementation keeps them.
  (d) Sylvester solver residual ||P X + X Q − C|| / ||C|| of the peer's default
      ("vec") and "eig" solvers and ours, on the r×r systems the method produces.

Times are process CPU time (time.process_time) with one torch thread by default: this
machine's 2 cores are shared by several busy jobs, so wall time mostly measures the
neighbours; CPU time of a single-threaded step does not. Wall medians are kept too.

B is set to small random values before timing (PEFT inits B = 0, a special case that
both implementations shortcut on the first step), and every optimizer takes two
warm-up steps so that timings are of the general, steady-state path.

    python benchmarks/lora_pro/speed.py                 # writes speed.json next to this file
    python benchmarks/lora_pro/speed.py --layers 30 --vocab 49152   # the real model's depth
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


# ----------------------------------------------------------------------------- models
def smollm2_like(layers: int, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


class LlamaMLP7B(nn.Module):
    """Llama-2-7B's MLP widths as two linears (up 4096→11008, down 11008→4096)."""

    def __init__(self, d=4096, h=11008):
        super().__init__()
        self.up = nn.Linear(d, h, bias=False)
        self.down = nn.Linear(h, d, bias=False)

    def forward(self, x):
        return self.down(torch.nn.functional.silu(self.up(x)))


def add_lora(model, targets):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)  # leave PEFT's B = 0 special case; time the general path
    return pm


# ----------------------------------------------------------------------------- optimizers
def build_optimizers(model, lr=1e-4, include=None):
    from lora_pro import LoRAProAdamW as PeerAdamW

    from hf_clipadapt.lora_pro import LoraProAdamW

    params = [p for p in model.parameters() if p.requires_grad]
    makers = {
        "LoRA + AdamW (fused)": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True),
        "ours full": lambda: LoraProAdamW(model, lr=lr, mode="full"),
        "ours full, bf16 moments": lambda: LoraProAdamW(model, lr=lr, mode="full", moment_dtype=torch.bfloat16),
        "ours efficient": lambda: LoraProAdamW(model, lr=lr, mode="efficient"),
        "peer full": lambda: PeerAdamW(model, lr=lr, weight_decay=0.0, lorapro_mode="full"),
        "peer efficient": lambda: PeerAdamW(model, lr=lr, weight_decay=0.0, lorapro_mode="efficient"),
    }
    return {k: f() for k, f in makers.items() if include is None or k in include}


def state_bytes(opt) -> dict:
    """Bytes held by an optimizer between steps: its state tensors, plus the
    persistent scratch buffers our full mode keeps (reported separately)."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for st in getattr(opt, "state", {}).values():
        for v in st.values():
            add(v)
    for attr in ("_state_m", "_state_v", "_state_mA", "_state_vA", "_state_mB", "_state_vB"):  # the peer
        for v in getattr(opt, attr, {}).values():
            add(v)
    base = getattr(opt, "_base", None)
    if base is not None:
        for st in base.state.values():
            for v in st.values():
                add(v)
    scratch = sum(
        a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in getattr(opt, "_scratch", {}).values()
    )
    return {"state_bytes": total, "scratch_bytes": scratch}


def set_grads(model, grads):
    for p, g in zip([p for p in model.parameters() if p.requires_grad], grads):
        p.grad = g.clone()


def fwd_bwd(model, batch):
    out = model(**batch) if isinstance(batch, dict) else model(batch)
    loss = out.loss if hasattr(out, "loss") else out.float().pow(2).mean()
    loss.backward()
    return loss


def bench(model, batch, names, repeats: int, warmup: int = 2, train_step: bool = True):
    """Median optimizer.step() and fwd+bwd+step times, interleaved across optimizers."""
    model.train()
    # Fixed gradients from one fwd/bwd, restored before every timed step(), so each
    # optimizer times the same work (step() of LoRA-Pro rewrites nothing in .grad, the
    # peer overwrites .grad in place, hence the restore).
    model.zero_grad(set_to_none=True)
    fwd_bwd(model, batch)
    grads = [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]
    p0 = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    opts = build_optimizers(model, include=names)
    res = {k: {"step_ms": [], "train_ms": [], "step_wall_ms": [], "train_wall_ms": []} for k in opts}
    for opt in opts.values():  # warm-up: moments exist, general path, allocations done
        for _ in range(warmup):
            set_grads(model, grads)
            opt.step()
    for _ in range(repeats):
        for k, opt in opts.items():
            set_grads(model, grads)
            c0, t0 = time.process_time(), time.perf_counter()
            opt.step()
            res[k]["step_ms"].append(1e3 * (time.process_time() - c0))
            res[k]["step_wall_ms"].append(1e3 * (time.perf_counter() - t0))
    if train_step:
        for _ in range(repeats):
            for k, opt in opts.items():
                opt.zero_grad(set_to_none=True)
                c0, t0 = time.process_time(), time.perf_counter()
                fwd_bwd(model, batch)
                opt.step()
                res[k]["train_ms"].append(1e3 * (time.process_time() - c0))
                res[k]["train_wall_ms"].append(1e3 * (time.perf_counter() - t0))
    with torch.no_grad():  # leave the model as found
        for p, q in zip([p for p in model.parameters() if p.requires_grad], p0):
            p.copy_(q)
    out = {}
    for k, opt in opts.items():
        r = {
            "step_ms": statistics.median(res[k]["step_ms"]),
            "step_wall_ms": statistics.median(res[k]["step_wall_ms"]),
            "step_ms_all": [round(x, 3) for x in res[k]["step_ms"]],
        }
        if train_step:
            r["train_ms"] = statistics.median(res[k]["train_ms"])
            r["train_wall_ms"] = statistics.median(res[k]["train_wall_ms"])
            r["train_ms_all"] = [round(x, 2) for x in res[k]["train_ms"]]
        r.update(state_bytes(opt))
        out[k] = r
    del opts
    gc.collect()
    return out


# ----------------------------------------------------------------------------- Sylvester
def sylvester_check(trials: int = 20, r: int = 8, m: int = 1536, n: int = 576):
    """Residual of P X + X Q = C for P = BᵀB + δI, Q = AAᵀ + δI, C = −(BᵀB)⁻¹ gA Aᵀ / s²,
    the system LoRA-Pro solves, with PEFT-like scales (A ~ kaiming-uniform, B small)
    and with unit-normal factors. float32 inputs, as both implementations run."""
    from lora_pro._lorapro import _solve_sylvester, _solve_sylvester_vec

    from hf_clipadapt.lora_pro import solve_sylvester_spd

    out = {}
    g = torch.Generator().manual_seed(0)

    def isotropic(a_std, b_std):
        return lambda: (torch.randn(r, n, generator=g) * a_std, torch.randn(m, r, generator=g) * b_std)

    def anisotropic(spread):
        # Trained adapters have spread-out singular values in unrelated bases: A = diag(σ_A)·Q_Aᵀ,
        # B = Q_B·diag(σ_B)·0.1 with σ log-spaced over `spread` and shuffled between A and B.
        def make():
            sig = torch.logspace(0, -math.log10(spread), r)
            qa = torch.linalg.qr(torch.randn(n, r, generator=g))[0]
            qb = torch.linalg.qr(torch.randn(m, r, generator=g))[0]
            return (qa * sig).T.contiguous(), qb * sig[torch.randperm(r, generator=g)] * 0.1

        return make

    cases = (
        ("unit normal A, B", isotropic(1.0, 1.0)),
        ("PEFT-like, B std 0.02", isotropic((1 / n) ** 0.5, 0.02)),
        ("PEFT-like, early training, B std 1e-3", isotropic((1 / n) ** 0.5, 1e-3)),
        ("anisotropic, singular values spread 10x", anisotropic(10.0)),
        ("anisotropic, singular values spread 100x", anisotropic(100.0)),
    )
    for scale_name, make in cases:
        rows = {"peer vec (default)": [], "peer eig": [], "ours (eigh)": []}
        for _ in range(trials):
            A, B = make()
            gA = torch.randn(r, n, generator=g) * 1e-3
            s = 2.0
            P = B.T @ B + 1e-6 * torch.eye(r)
            Q = A @ A.T + 1e-6 * torch.eye(r)
            C = -torch.linalg.solve(P, gA) @ A.T / s**2
            for name, fn in (
                ("peer vec (default)", lambda: _solve_sylvester_vec(P, Q, C)),
                ("peer eig", lambda: torch.as_tensor(_solve_sylvester(P, Q, C)).real.float()),
                ("ours (eigh)", lambda: solve_sylvester_spd(P, Q, C)),
            ):
                X = fn().to(torch.float64)
                res = (P.double() @ X + X @ Q.double() - C.double()).norm() / C.double().norm()
                rows[name].append(float(res))
        out[scale_name] = {k: {"median": statistics.median(v), "max": max(v)} for k, v in rows.items()}
    return out


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4, help="decoder layers of the SmolLM2-sized model (30 = real)")
    p.add_argument(
        "--vocab",
        type=int,
        default=2048,
        help="49152 = real; small by default so the ratio reflects the decoder layers",
    )
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--repeats_7b", type=int, default=3)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="timings are process CPU time; 1 thread keeps them clean on a shared machine",
    )
    p.add_argument(
        "--parts",
        default="sylvester,smollm2,7b",
        help="comma list of sylvester, smollm2, 7b; results merge into --out",
    )
    p.add_argument("--out", default=str(HERE / "speed.json"))
    p.add_argument("--report", action="store_true", help="print the markdown tables of --out and exit")
    a = p.parse_args(argv)
    if a.report:
        print(markdown(json.loads(Path(a.out).read_text())))
        return
    torch.set_num_threads(a.threads)
    parts = set(a.parts.split(","))
    results = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    results["env"] = {
        "torch": torch.__version__,
        "threads": a.threads,
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }

    if "sylvester" in parts:
        print("Sylvester residuals ...", flush=True)
        results["sylvester"] = sylvester_check()
        print(json.dumps(results["sylvester"], indent=1), flush=True)
    if "smollm2" in parts:
        bench_smollm2(a, results)
    if "7b" in parts:
        bench_7b(a, results)
    results["env"]["loadavg_end"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print(f"wrote {a.out}")


def markdown(results) -> str:
    """The RESULTS.md tables from speed.json."""
    out = []
    if "smollm2" in results:
        sm = results["smollm2"]
        r = sm["results"]
        base = r["LoRA + AdamW (fused)"]
        out.append(
            f"**(a) SmolLM2-135M widths**: {sm['layers']} decoder layers, {sm['lora_pairs']} LoRA pairs (r=8, every linear), "
            f"{sm['rows']} rows a batch, median of {sm['repeats']} interleaved repeats, process CPU ms, 1 thread.\n"
        )
        out.append(
            "| optimizer | `step()` ms | vs peer (same mode) | train step ms (fwd+bwd+step) | vs LoRA+AdamW | optimizer state MB |"
        )
        out.append("|---|---|---|---|---|---|")
        pf = r.get("peer full", {}).get("step_ms")
        pe = r.get("peer efficient", {}).get("step_ms")
        for k, v in r.items():
            ref = pf if "full" in k else pe if "efficient" in k else None
            vs_peer = f"{ref / v['step_ms']:.1f}x faster" if ref and not k.startswith("peer") else "-"
            mb = v["state_bytes"] / 2**20
            scratch = f" (+{v['scratch_bytes'] / 2**20:.1f} scratch)" if v.get("scratch_bytes") else ""
            out.append(
                f"| {k} | {v['step_ms']:.2f} | {vs_peer} | {v['train_ms']:.1f} | {v['train_ms'] / base['train_ms']:.2f}x | {mb:.1f}{scratch} |"
            )
        out.append("")
    if "llama7b_mlp" in results:
        lm = results["llama7b_mlp"]
        r = lm["results"]
        pf = r.get("peer full", {}).get("step_ms")
        pe = r.get("peer efficient", {}).get("step_ms")
        out.append(
            f"**(b) Llama-2-7B MLP widths** (4096→11008→4096, r=8, 2 LoRA pairs), median of {lm['repeats']} repeats, process CPU ms, 1 thread.\n"
        )
        out.append("| optimizer | `step()` ms | vs peer (same mode) | optimizer state MB |")
        out.append("|---|---|---|---|")
        for k, v in r.items():
            ref = pf if "full" in k else pe if "efficient" in k else None
            vs = f"{ref / v['step_ms']:.1f}x faster" if ref and not k.startswith("peer") else "-"
            scratch = f" (+{v['scratch_bytes'] / 2**20:.1f} scratch)" if v.get("scratch_bytes") else ""
            out.append(f"| {k} | {v['step_ms']:.1f} | {vs} | {v['state_bytes'] / 2**20:.1f}{scratch} |")
        out.append("")
    if "sylvester" in results:
        out.append(
            "**(d) Sylvester residual** ||P X + X Q − C|| / ||C|| (median over 20 random r=8 systems, m=1536, n=576, float32):\n"
        )
        names = list(next(iter(results["sylvester"].values())))
        out.append("| factors | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for case, v in results["sylvester"].items():
            out.append(f"| {case} | " + " | ".join(f"{v[n]['median']:.2g}" for n in names) + " |")
        out.append("")
    return "\n".join(out)


def bench_smollm2(a, results):
    print(f"(a) SmolLM2-135M widths, {a.layers} layers ...", flush=True)
    model = add_lora(smollm2_like(a.layers, a.vocab), "all-linear")
    torch.manual_seed(2)
    ids = torch.randint(0, a.vocab, (1, a.rows))
    batch = {"input_ids": ids, "labels": ids}
    n_pairs = sum(1 for n, _ in model.named_parameters() if "lora_A" in n)
    names = [
        "LoRA + AdamW (fused)",
        "ours full",
        "ours full, bf16 moments",
        "ours efficient",
        "peer full",
        "peer efficient",
    ]
    results["smollm2"] = {
        "layers": a.layers,
        "lora_pairs": n_pairs,
        "rows": a.rows,
        "repeats": a.repeats,
        "results": bench(model, batch, names, a.repeats),
    }
    print(
        json.dumps(
            {
                k: {kk: vv for kk, vv in v.items() if not kk.endswith("_all")}
                for k, v in results["smollm2"]["results"].items()
            },
            indent=1,
        ),
        flush=True,
    )
    del model
    gc.collect()


def bench_7b(a, results):
    print("(b) Llama-2-7B MLP widths ...", flush=True)
    model = add_lora(LlamaMLP7B(), ["up", "down"])
    x = torch.randn(a.rows, 4096)
    names7 = ["LoRA + AdamW (fused)", "ours full", "ours efficient", "peer full", "peer efficient"]
    results["llama7b_mlp"] = {
        "rows": a.rows,
        "repeats": a.repeats_7b,
        "results": bench(model, x, names7, a.repeats_7b, warmup=2, train_step=False),
    }
    print(
        json.dumps(
            {
                k: {kk: vv for kk, vv in v.items() if not kk.endswith("_all")}
                for k, v in results["llama7b_mlp"]["results"].items()
            },
            indent=1,
        ),
        flush=True,
    )
    del model
    gc.collect()


if __name__ == "__main__":
    main()
