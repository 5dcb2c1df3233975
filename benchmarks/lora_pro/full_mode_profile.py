#!/usr/bin/env python
"""Where full mode's time goes, against the memory-bandwidth limit, and what FSDP2 sharding costs.

(1) bandwidth: this machine's single-thread memory bandwidth, from a large copy and from
    torch's fused AdamW kernel on a tensor the size of all of full mode's moments.
(2) profile: full-mode `step()` on the 4-block SmolLM2-width model (speed.py's setting (a):
    LoRA r=8 on every linear layer, 256 rows), broken down by torch operator
    (torch.profiler), and the bytes it must move: exact fp32 Adam reads and writes both
    m×n moments once, 16·Σm·n bytes per step; everything else stays in cache or is O(r·(m+n)).
(3) ratios: train step (forward + backward + step) of LoRA-Pro full and efficient against
    LoRA + AdamW (fused), interleaved in the same process, medians of process CPU time.
(4) sharded: the same `step()` under FSDP2 (fully_shard on a CPU mesh, gloo) at 1 and 2
    processes, with the bytes each rank all-reduces and all-gathers per step.

Times are process CPU time with one torch thread (the machine is a shared 2-core box; its
load average is recorded). Writes full_mode_profile.json next to this file.

    python benchmarks/lora_pro/full_mode_profile.py [--repeats 5] [--parts bandwidth,profile,ratios,sharded]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))


def _cpu_ms(fn, repeats):
    out = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        out.append(1e3 * (time.process_time() - c0))
    return statistics.median(out), out


def bandwidth(elems: int, repeats: int) -> dict:
    """GB/s of a copy (read + write) and of torch's fused AdamW (reads p, g, m, v; writes p, m, v)."""
    a, b = torch.rand(elems), torch.empty(elems)
    b.copy_(a)
    copy_ms, _ = _cpu_ms(lambda: b.copy_(a), repeats)
    p, g, m, v = torch.zeros(elems), torch.rand(elems), torch.zeros(elems), torch.zeros(elems)
    step = torch.zeros(())

    def adam():
        torch._fused_adamw_(
            [p],
            [g],
            [m],
            [v],
            [],
            [step],
            lr=-1.0,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )

    adam()
    adam_ms, _ = _cpu_ms(adam, repeats)
    return {
        "elems": elems,
        "copy_GBps": 8 * elems / copy_ms / 1e6,
        "fused_adamw_GBps": 28 * elems / adam_ms / 1e6,
        "copy_ms": copy_ms,
        "fused_adamw_ms": adam_ms,
    }


def _model(layers=4, vocab=2048, rows=256):
    from speed import add_lora, smollm2_like

    model = add_lora(smollm2_like(layers, vocab), "all-linear")
    torch.manual_seed(2)
    ids = torch.randint(0, vocab, (1, rows))
    return model, {"input_ids": ids, "labels": ids}


def _sum_mn(model) -> int:
    from hf_clipadapt.lora_pro import find_lora_pairs

    return sum(p.B.shape[0] * p.A.shape[1] for p in find_lora_pairs(model)[0])


def profile(repeats: int) -> dict:
    from hf_clipadapt.lora_pro import LoraProAdamW

    model, batch = _model()
    model(**batch).loss.backward()
    opt = LoraProAdamW(model, lr=1e-4, mode="full")
    for _ in range(2):
        opt.step()
    step_ms, all_ms = _cpu_ms(opt.step, repeats)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            opt.step()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    top = [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / repeats} for e in ops[:12]
    ]
    mn = _sum_mn(model)
    return {
        "sum_mn": mn,
        "moment_bytes_moved_per_step": 16 * mn,
        "step_ms": step_ms,
        "step_ms_all": all_ms,
        "ops_by_self_time": top,
    }


def ratios(repeats: int) -> dict:
    from hf_clipadapt.lora_pro import LoraProAdamW

    model, batch = _model()
    params = [p for p in model.parameters() if p.requires_grad]
    p0 = [p.detach().clone() for p in params]
    opts = {
        "LoRA + AdamW (fused)": torch.optim.AdamW(params, lr=1e-4, fused=True),
        "LoRA-Pro full": LoraProAdamW(model, lr=1e-4, mode="full"),
        "LoRA-Pro efficient": LoraProAdamW(model, lr=1e-4, mode="efficient"),
    }

    def train_step(opt):
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()

    times = {k: [] for k in opts}
    for _ in range(2):  # warm-up: moments allocated, general path
        for opt in opts.values():
            train_step(opt)
    for _ in range(repeats):
        for k, opt in opts.items():
            times[k].append(_cpu_ms(lambda: train_step(opt), 1)[0])
            with torch.no_grad():  # every optimizer times the same weights
                for p, q in zip(params, p0):
                    p.copy_(q)
    base = statistics.median(times["LoRA + AdamW (fused)"])
    return {
        k: {"train_ms": statistics.median(v), "ratio": statistics.median(v) / base, "all": v} for k, v in times.items()
    }


def sharded_worker(out: str, repeats: int) -> None:
    """One rank of part (4): FSDP2 on the profile's model, step() timed, collective bytes counted."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from hf_clipadapt.lora_pro import LoraProAdamW
    from hf_clipadapt.lora_pro.sharded import ShardSpec

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=os.environ["LORAPRO_STORE"], rank=rank, world_size=world)
    torch.set_num_threads(1)
    counted = {"all_reduce": 0, "all_gather": 0}
    reduce, gather = ShardSpec.all_reduce_, ShardSpec.gather_rows

    def count_reduce(self, t):
        counted["all_reduce"] += t.numel() * t.element_size()
        return reduce(self, t)

    def count_gather(self, t, total):
        counted["all_gather"] += t.numel() * t.element_size() * (self.world - 1)  # received from the others
        return gather(self, t, total)

    ShardSpec.all_reduce_, ShardSpec.gather_rows = count_reduce, count_gather
    model, batch = _model()
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.base_model.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model(**batch).loss.backward()
    results = {}
    for mode in ("full", "efficient"):
        opt = LoraProAdamW(model, lr=1e-4, mode=mode)
        for _ in range(2):
            opt.step()
        counted.update(all_reduce=0, all_gather=0)
        dist.barrier()
        w0 = time.perf_counter()
        ms, all_ms = _cpu_ms(opt.step, repeats)
        wall = 1e3 * (time.perf_counter() - w0) / repeats
        state = sum(
            v.to_local().numel() * v.element_size()
            for st in opt.state.values()
            for v in st.values()
            if hasattr(v, "to_local")
        )
        results[mode] = {
            "step_cpu_ms": ms,
            "step_wall_ms": wall,
            "step_cpu_ms_all": all_ms,
            "all_reduce_bytes_per_step": counted["all_reduce"] / repeats,
            "all_gather_bytes_received_per_step": counted["all_gather"] / repeats,
            "sharded_state_bytes_this_rank": state,
        }
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def sharded(repeats: int) -> dict:
    out = {}
    for world in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "WORLD_SIZE": str(world),
                "OMP_NUM_THREADS": "1",
                "LORAPRO_STORE": f"file://{tmp}/store",
            }
            procs = [
                subprocess.Popen(
                    [sys.executable, __file__, "--sharded_worker", tmp, "--repeats", str(repeats)],
                    env={**env, "RANK": str(r)},
                )
                for r in range(world)
            ]
            if any(p.wait(timeout=1200) for p in procs):
                raise RuntimeError(f"sharded run at world {world} failed")
            out[f"world{world}"] = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parts", default="bandwidth,profile,ratios,sharded")
    ap.add_argument("--out", default=str(HERE / "full_mode_profile.json"))
    ap.add_argument("--sharded_worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.sharded_worker:
        return sharded_worker(a.sharded_worker, a.repeats)
    path = Path(a.out)
    res = json.loads(path.read_text()) if path.exists() else {}
    res["machine"] = {
        "load_average_at_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": 1,
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    parts = a.parts.split(",")
    for part in parts:  # each part records the load it ran under
        res.setdefault("load_average_per_part", {})[part] = os.getloadavg()
    if "bandwidth" in parts:
        res["bandwidth"] = bandwidth(1 << 25, a.repeats)
        print(res["bandwidth"], flush=True)
    if "profile" in parts:
        res["profile"] = profile(a.repeats)
        print({k: v for k, v in res["profile"].items() if k != "ops_by_self_time"}, flush=True)
        for e in res["profile"]["ops_by_self_time"]:
            print(f"  {e['op']:40s} {100 * e['share']:5.1f}%  {e['calls_per_step']:.0f}/step", flush=True)
    if "ratios" in parts:
        res["ratios"] = ratios(a.repeats)
        print({k: (round(v["train_ms"], 1), round(v["ratio"], 3)) for k, v in res["ratios"].items()}, flush=True)
    if "sharded" in parts:
        res["sharded"] = sharded(a.repeats)
        print(json.dumps(res["sharded"], indent=1), flush=True)
    res["machine"]["load_average_at_end"] = os.getloadavg()
    path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
