#!/usr/bin/env python
"""Report of the SFT convergence runs (convergence.py, task sft: SmolLM2-135M-Instruct on
gsm_symbolic worked solutions): every run's validation and test token loss, the run each method
chooses on validation, the share of the LoRA → full-FT gap that LoRA-Pro closes (test loss and
end-of-training loss), and the loss-against-LR view with every method on one axis.

    python benchmarks/lora_pro/sft_report.py --work /tmp/lora_pro_convergence

Writes sft_results.json, sft_table.md and sft_lr_sweep.png next to this file. Selection reads
validation only; every run's test loss is recorded so that the equal-LR view can be drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cls_report as R  # noqa: E402
import convergence as C  # noqa: E402


def load_runs(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob("sft_*_s*.json"))]


def plots(runs: list[dict], best: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for m in C.METHODS:
        grid = sorted((r for r in runs if r["method"] == m and r["seed"] == 0), key=lambda r: r["lr"])
        if not grid:
            continue
        lrs = [r["lr"] for r in grid]
        line, = axes[0].semilogx(lrs, [r["val"]["loss"] for r in grid], "o-", label=f"{C.LABELS[m]} (validation)")
        if all(r.get("test") for r in grid):
            axes[0].semilogx(lrs, [r["test"]["loss"] for r in grid], "x--", color=line.get_color(), alpha=0.6, label=f"{C.LABELS[m]} (test)")
    axes[0].set(xlabel="learning rate", ylabel="held-out token loss", title="LR sweep, seed 0 (all methods on one axis)")
    for m, r in best.items():
        y = torch.tensor(r["train_loss"])
        ys = torch.nn.functional.avg_pool1d(y[None, None], 9, 1, padding=4, count_include_pad=False)[0, 0]
        axes[1].plot(range(1, len(ys) + 1), ys.tolist(), label=f"{C.LABELS[m]} (lr {r['lr']:g})")
    axes[1].set(xlabel="step", ylabel="train loss (moving average, 9 steps)", title="chosen runs, seed 0")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "sft_lr_sweep.png", dpi=110)


def markdown(res: dict) -> str:
    lines = ["| method | LR | seed | val loss | test loss | train loss, last 40 steps | median s/step (CPU) |", "|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(C.METHODS)}
    for r in sorted(res["runs"], key=lambda r: (order[r["method"]], r["lr"], r["seed"])):
        t = f"{r['test']['loss']:.4f}" if r.get("test") else "-"
        lines.append(f"| {C.LABELS[r['method']]} | {r['lr']:g} | {r['seed']} | {r['val']['loss']:.4f} | {t} | "
                     f"{r['train_loss_end']:.4f} | {r['median_step_s']:.1f} |")
    lines += ["", "| method | chosen LR (validation) | bracketed | val loss | test loss |", "|---|---|---|---|---|"]
    for m, c in res["chosen"].items():
        lines.append(f"| {C.LABELS[m]} | {c['lr']:g} | {c['bracketed']} | {c['val']['loss']:.4f} | {c['test']['loss']:.4f} |")
    if res.get("seeds_at_chosen_lr"):
        lines += ["", "| method | LR | seeds | test loss mean ± std | train loss, last 40 steps |", "|---|---|---|---|---|"]
        for m, st in res["seeds_at_chosen_lr"].items():
            a, t = st["test_loss"], st["train_loss_end"]
            lines.append(f"| {C.LABELS[m]} | {st['lr']:g} | {a['n']} | {a['mean']:.4f} ± {R.fmt(a['std'], 4)} | {t['mean']:.4f} ± {R.fmt(t['std'], 4)} |")
    if res.get("gap_over_seeds"):
        lines += ["", "| method | metric | LoRA → full-FT gap | method − LoRA | share of the gap closed |", "|---|---|---|---|---|"]
        for m, g in res["gap_over_seeds"].items():
            for key, label in (("test_loss", "test loss"), ("train_loss_end", "train loss, last 40 steps")):
                x = g[key]
                sh = "n/a" if x["share"] is None else f"{100 * x['share']['mean']:+.0f}%" + (
                    f" ± {100 * x['share']['std']:.0f}%" if x["share"]["std"] is not None else "")
                lines.append(f"| {C.LABELS[m]} | {label} ({len(g['seeds'])} seed(s)) | {x['gap']['mean']:+.4f} ± {R.fmt(x['gap']['std'], 4)} | "
                             f"{x['diff_vs_lora']['mean']:+.4f} ± {R.fmt(x['diff_vs_lora']['std'], 4)} | {sh} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/lora_pro_convergence")
    a = p.parse_args(argv)
    runs = [r for r in load_runs(Path(a.work)) if r["method"] in C.METHODS]
    best = {m: b for m in C.METHODS if (b := R.chosen(runs, m)) is not None}
    stats = R.seed_stats(runs, best)
    res = {"runs": [{**{k: r[k] for k in ("method", "lr", "seed", "val", "test", "median_step_s", "wall_s", "steps")},
                     "train_loss_end": R.train_loss_end(r), "split_sizes": r.get("split_sizes")} for r in runs],
           "chosen": {m: {"lr": b["lr"], "val": b["val"], "test": b["test"], "bracketed": R.bracketed(runs, b)} for m, b in best.items()},
           "seeds_at_chosen_lr": stats, "gap_over_seeds": R.gap_over_seeds(stats, keys=("test_loss", "train_loss_end")),
           "config": C.TASKS["sft"], "train_loss_chosen": {m: b["train_loss"] for m, b in best.items()}}
    (HERE / "sft_results.json").write_text(json.dumps(res, indent=1))
    (HERE / "sft_table.md").write_text(markdown(res))
    plots(runs, best)
    print(markdown(res))


if __name__ == "__main__":
    main()
