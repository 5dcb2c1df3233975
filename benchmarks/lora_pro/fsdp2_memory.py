"""Memory per rank of LoRA-Pro under FSDP2 on the whole SmolLM2-135M (30 decoder blocks,
LoRA r=8 on every linear layer, 210 pairs), at world sizes 1 and 2, measured.

    python benchmarks/lora_pro/fsdp2_memory.py [--rows 128] [--out benchmarks/lora_pro/fsdp2_memory.json]

Each world size runs as that many gloo processes on the CPU (`fully_shard` on every decoder
block and on the root, as `gpu_check.py --fsdp2` and Accelerate's FSDP2 plugin do). Per rank
and per optimizer (LoRA + AdamW; LoRA-Pro full, efficient, and full with factored v and bf16 m)
it records the bytes this rank holds, counted from the tensors themselves (the local shard of
each DTensor): parameters, LoRA gradients and optimizer state; the process's peak resident
memory (`ru_maxrss`, which also counts Python, torch and the gathered blocks of forward and
backward); and the median `step()` time. Weights are random with SmolLM2-135M's shapes: memory
depends only on the shapes. The global batch is the same at both world sizes (`--rows` token
rows of 256, split over the ranks).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
METHODS = ("lora-adamw", "lorapro-full", "lorapro-efficient", "lorapro-full-factored")


def local_bytes(tensors) -> int:
    from hf_clipadapt.lora_pro.sharded import local_nbytes

    return sum(local_nbytes(t) for t in tensors if isinstance(t, torch.Tensor))


def current_rss() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmRSS:"))) * 1024


def build(world: int, rows: int, seq: int):
    """The sharded SmolLM2-135M-shaped PEFT model and this rank's slice of the global batch."""
    import torch.distributed as dist
    from gpu_check import SMOLLM2_135M
    from speed import add_lora
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = add_lora(LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)), "all-linear")
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.base_model.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    ids = torch.randint(0, SMOLLM2_135M["vocab_size"], (rows, seq), generator=torch.Generator().manual_seed(1))
    mine = ids.chunk(world)[dist.get_rank()]
    return model, {"input_ids": mine, "labels": mine}


def measure(method: str, model, batch, repeats: int) -> dict:
    from gpu_check import make_optimizer, state_bytes

    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    opt = make_optimizer(method, model, lr=1e-5)
    opt.step()  # the state exists from the first step on
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        opt.step()
        times.append(1e3 * (time.perf_counter() - start))
    trained = [p for p in model.parameters() if p.requires_grad]
    out = {
        "optimizer_state_bytes": state_bytes(opt),
        "lora_grad_bytes": local_bytes(p.grad for p in trained),
        "step_ms_median": statistics.median(times),
        "rss_bytes_after_step": current_rss(),
        "peak_rss_bytes_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    del opt
    gc.collect()
    return out


def worker(out: str, rows: int, seq: int, repeats: int) -> None:
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=os.environ["LORAPRO_STORE"], rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, batch = build(world, rows, seq)
    trained = [p for p in model.parameters() if p.requires_grad]
    result = {
        "rank": rank,
        "world": world,
        "rows_this_rank": int(batch["input_ids"].shape[0]),
        "param_bytes": local_bytes(model.parameters()),
        "lora_param_bytes": local_bytes(trained),
        "lora_pairs": sum(1 for n, _ in model.named_parameters() if n.endswith("lora_A.default.weight")),
        "methods": {},
    }
    for method in METHODS:
        result["methods"][method] = measure(method, model, batch, repeats)
        dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_world(world: int, args) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1", "LORAPRO_STORE": f"file://{tmp}/s"}
        cmd = [sys.executable, __file__, "--worker", tmp, "--rows", str(args.rows), "--seq", str(args.seq)]
        cmd += ["--repeats", str(args.repeats)]
        procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r)}) for r in range(world)]
        if any(p.wait(timeout=3600) for p in procs):
            raise RuntimeError(f"the run at world size {world} failed")
        return [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]


def table(res: dict) -> str:
    mib = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
    lines = [
        "| world | rank | method | parameters (MiB) | LoRA grads (MiB) | optimizer state (MiB) | step (ms) "
        "| RSS after step (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for world, ranks in res["worlds"].items():
        for r in ranks:
            for m, v in r["methods"].items():
                lines.append(
                    f"| {world} | {r['rank']} | {m} | {mib(r['param_bytes'])} | {mib(v['lora_grad_bytes'])} | "
                    f"{mib(v['optimizer_state_bytes'])} | {v['step_ms_median']:.0f} | {mib(v['rss_bytes_after_step'])} |"
                )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2, help="global batch in rows of --seq tokens")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "fsdp2_memory.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.rows, a.seq, a.repeats)
    res = {
        "settings": vars(a),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "worlds": {str(w): run_world(w, a) for w in (1, 2)},
    }
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(table(res))


if __name__ == "__main__":
    main()
