#!/usr/bin/env python
"""Report of the classification convergence runs (convergence.py, task cls): per-method LR
sweeps, the validation-chosen run of each method, the share of the LoRA → full-FT test gap
that LoRA-Pro closes (its spread over seeds, and a paired bootstrap over test reviews with the
seeds pooled), and the distance of each method's weight update ΔW to full fine-tuning's.

    python benchmarks/lora_pro/cls_report.py --work /tmp/lora_pro_convergence

Writes cls_results.json, cls_table.md, cls_lr_sweep.png and cls_loss_curves.png next to this
file. Selection reads validation only; test predictions of the chosen runs are recomputed
from their saved weights (cached in the work folder) for the bootstrap.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bootstrap as B
import convergence as C

LORA_METHODS = ("lora", "lorapro-full", "lorapro-efficient", "lorapro-factored")


def load_runs(work: Path, task: str = "cls") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob(f"{task}_*_s*.json"))]


def chosen(runs: list[dict], method: str, seed: int = 0) -> dict | None:
    cand = [r for r in runs if r["method"] == method and r["seed"] == seed]
    return min(cand, key=C.val_key) if cand else None


def bracketed(runs: list[dict], best: dict) -> str:
    """'yes' when a worse LR on each side of the chosen one ran (seed 0), else which side is open."""
    grid = sorted(
        (r for r in runs if r["method"] == best["method"] and r["seed"] == best["seed"]), key=lambda r: r["lr"]
    )
    lower = [r for r in grid if r["lr"] < best["lr"]]
    upper = [r for r in grid if r["lr"] > best["lr"]]
    if lower and upper:
        return "yes"
    if not lower and not upper:
        return "no: only this LR ran"
    return "no: chosen LR is the " + ("lowest" if not lower else "highest") + " of the grid"


@torch.no_grad()
def test_predictions(work: Path, run: dict) -> list[int]:
    """Per-review correctness (0/1) of a run on the test split, from its saved weights."""
    name = C.run_name("cls", run["method"], run["lr"], run["seed"])
    cache = work / f"preds_{name}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model, tok, splits = C.restore_run(work, run)
    col = C.collate("cls", tok)
    hits = []
    for b in C.batches(splits["test"], 64, col):
        hits += (model(**b).logits.argmax(-1) == b["labels"]).int().tolist()
    cache.write_text(json.dumps(hits))
    return hits


def test_rows(work: Path, run: dict) -> torch.Tensor:
    """A run's test reviews as bootstrap rows [correct, 1] (bootstrap.py)."""
    hits = torch.tensor(test_predictions(work, run), dtype=torch.float64)
    return torch.stack([hits, torch.ones_like(hits)], 1)


def delta_w_of(sd: dict, method: str, base_sd: dict) -> dict[str, torch.Tensor]:
    """ΔW of every adapted weight from a saved state: s·B·A for LoRA runs, W − W0 for full fine-tuning."""
    out = {}
    if method == "full":
        for n, w in sd.items():
            if n in base_sd and w.dim() == 2 and "embeddings" not in n and "classifier" not in n:
                out[n] = w - base_sd[n]
        return out
    s = 16 / 8  # lora_alpha / r, as convergence.wrap sets them
    for n, a in sd.items():
        if ".lora_A." in n:
            b = sd[n.replace(".lora_A.", ".lora_B.")]
            key = n.split("base_model.model.", 1)[1].replace(".lora_A.default", "")
            out[key] = s * b @ a
    return out


def delta_w(work: Path, run: dict, base_sd: dict) -> dict[str, torch.Tensor]:
    sd = torch.load(work / f"{C.run_name('cls', run['method'], run['lr'], run['seed'])}.pt")
    return delta_w_of(sd, run["method"], base_sd)


def compare(dw: dict, ref: dict) -> dict:
    """Relative distance, cosine and norm ratio of ΔW to a reference ΔW over their shared matrices."""
    keys = sorted(set(dw) & set(ref))
    a = torch.cat([dw[k].flatten() for k in keys]).double()
    b = torch.cat([ref[k].flatten() for k in keys]).double()
    return {
        "rel_distance": float((a - b).norm() / b.norm()),
        "cosine": float(a @ b / (a.norm() * b.norm())),
        "norm_ratio": float(a.norm() / b.norm()),
        "matrices": len(keys),
    }


def base_state() -> dict:
    from lora_pro_text_classification import offline_minilm_dir
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(offline_minilm_dir(), num_labels=2).state_dict()


def update_distances(work: Path, best: dict, runs: list[dict], base_sd: dict) -> dict:
    """Final ΔW of every LoRA run (seed 0) against the chosen full-FT run's; keyed "method@lr"."""
    ref = delta_w(work, best["full"], base_sd)
    return {
        f"{r['method']}@{r['lr']:g}": compare(delta_w(work, r, base_sd), ref)
        for r in sorted(
            (r for r in runs if r["method"] in LORA_METHODS and r["seed"] == 0), key=lambda r: (r["method"], r["lr"])
        )
    }


def update_distance_curves(work: Path, runs: list[dict], base_sd: dict) -> dict:
    """ΔW over training at the same LR and data order: at every snapshot step, each LoRA method's
    ΔW_t against full fine-tuning's ΔW_t (seed 0). Keyed by LR, then method, then step."""

    def snap(r: dict) -> Path:
        return work / f"{C.run_name('cls', r['method'], r['lr'], r['seed'])}.snaps.pt"

    out = {}
    for full in (r for r in runs if r["method"] == "full" and r["seed"] == 0):
        peers = [
            r
            for r in runs
            if r["method"] in LORA_METHODS and r["seed"] == 0 and r["lr"] == full["lr"] and snap(r).exists()
        ]
        if not snap(full).exists() or not peers:
            continue
        ref = {t: delta_w_of(sd, "full", base_sd) for t, sd in torch.load(snap(full)).items()}
        out[f"{full['lr']:g}"] = {
            r["method"]: {
                str(t): compare(delta_w_of(sd, r["method"], base_sd), ref[t])
                for t, sd in torch.load(snap(r)).items()
                if t in ref
            }
            for r in peers
        }
    return out


def plot_curves(curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        return
    fig, axes = plt.subplots(len(curves), 2, figsize=(11, 3.6 * len(curves)), squeeze=False)
    for row, (lr, per_method) in zip(axes, sorted(curves.items(), key=lambda kv: float(kv[0]))):
        for m, c in per_method.items():
            steps = sorted(int(t) for t in c)
            row[0].plot(steps, [c[str(t)]["cosine"] for t in steps], "o-", label=C.LABELS[m])
            row[1].plot(steps, [c[str(t)]["norm_ratio"] for t in steps], "o-", label=C.LABELS[m])
        row[0].set_title(f"cosine(ΔW, ΔW of full FT), lr {lr}, same data order")
        row[1].set_title(f"‖ΔW‖ / ‖ΔW of full FT‖, lr {lr}")
        row[1].set_yscale("log")
        for ax in row:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "cls_delta_w.png", dpi=110)


def plots(
    runs: list[dict],
    best: dict,
    metric: str = "accuracy",
    ylabel: str = "accuracy %",
    smooth: int = 21,
    name: str = "cls_lr_sweep.png",
) -> None:
    """Left: the seed-0 LR sweep of every method on one axis (validation solid, test dashed).
    Right: the training-loss curves of the chosen runs (moving average over `smooth` steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for m in C.METHODS:
        grid = sorted((r for r in runs if r["method"] == m and r["seed"] == 0), key=lambda r: r["lr"])
        if not grid:
            continue
        lrs = [r["lr"] for r in grid]
        (line,) = axes[0].semilogx(lrs, [r["val"][metric] for r in grid], "o-", label=f"{C.LABELS[m]} (validation)")
        if all(r.get("test") for r in grid):
            axes[0].semilogx(
                lrs,
                [r["test"][metric] for r in grid],
                "x--",
                color=line.get_color(),
                alpha=0.6,
                label=f"{C.LABELS[m]} (test)",
            )
    axes[0].set(xlabel="learning rate", ylabel=ylabel, title="LR sweep, seed 0 (all methods on one axis)")
    if metric == "loss":  # a diverged run's loss would flatten every other point
        axes[0].set_yscale("log")
    axes[0].legend(fontsize=6, loc="lower left" if metric == "accuracy" else "upper right")
    for m, r in best.items():
        y = torch.tensor(r["train_loss"])
        ys = torch.nn.functional.avg_pool1d(y[None, None], smooth, 1, padding=smooth // 2, count_include_pad=False)[
            0, 0
        ]
        axes[1].plot(range(1, len(ys) + 1), ys.tolist(), label=f"{C.LABELS[m]} (lr {r['lr']:g})")
    axes[1].set(xlabel="step", ylabel=f"train loss (moving average, {smooth} steps)", title="chosen runs, seed 0")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=110)


def train_loss_end(run: dict, k: int = 40) -> float:
    """Mean training loss of the last k steps: where each optimiser got to on the data it fits."""
    return statistics.mean(run["train_loss"][-k:])


def mean_std(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def seed_stats(runs: list[dict], best: dict) -> dict:
    """Per method at its (seed-0) chosen LR: per-seed test accuracy (cls), test loss and end-of-training loss."""
    out = {}
    for m, b in best.items():
        rs = sorted(
            (r for r in runs if r["method"] == m and r["lr"] == b["lr"] and r.get("test")), key=lambda r: r["seed"]
        )
        per = {
            r["seed"]: {
                "test_loss": r["test"]["loss"],
                "train_loss_end": train_loss_end(r),
                **({"test_accuracy": r["test"]["accuracy"]} if "accuracy" in r["test"] else {}),
            }
            for r in rs
        }
        out[m] = {
            "lr": b["lr"],
            "per_seed": per,
            **{k: mean_std([v[k] for v in per.values()]) for k in next(iter(per.values()), {})},
        }
    return out


def gap_over_seeds(stats: dict, keys=("test_accuracy", "train_loss_end")) -> dict:
    """Seed by seed, the LoRA → full-FT gap and the share of it each LoRA-Pro variant closes,
    on a test metric and on end-of-training loss (the optimisation view)."""
    if "lora" not in stats or "full" not in stats:
        return {}
    lo, fu = stats["lora"]["per_seed"], stats["full"]["per_seed"]
    out = {}
    for m in (m for m in stats if m.startswith("lorapro")):
        pro = stats[m]["per_seed"]
        seeds = sorted(set(lo) & set(fu) & set(pro))
        if not seeds:
            continue
        out[m] = {"seeds": seeds}
        for key in keys:
            gap = [fu[s][key] - lo[s][key] for s in seeds]
            diff = [pro[s][key] - lo[s][key] for s in seeds]
            share = [d / g for d, g in zip(diff, gap) if abs(g) > 1e-9]
            out[m][key] = {
                "gap": mean_std(gap),
                "diff_vs_lora": mean_std(diff),
                "share": mean_std(share) if share else None,
            }
    return out


def summarize(runs: list[dict], task: str, gap_keys: tuple[str, ...]) -> tuple[dict, dict]:
    """What both reports share: each method's validation-chosen run (seed 0), whether its LR is
    bracketed, seed statistics at that LR and the per-seed gap shares. Returns (best, results)."""
    best = {m: b for m in C.METHODS if (b := chosen(runs, m)) is not None}
    stats = seed_stats(runs, best)
    res = {
        "runs": [
            {
                **{k: r[k] for k in ("method", "lr", "seed", "val", "test", "median_step_s", "wall_s", "steps")},
                "train_loss_end": train_loss_end(r),
                "split_sizes": r.get("split_sizes"),
            }
            for r in runs
        ],
        "chosen": {
            m: {"lr": b["lr"], "val": b["val"], "test": b["test"], "bracketed": bracketed(runs, b)}
            for m, b in best.items()
        },
        "seeds_at_chosen_lr": stats,
        "gap_over_seeds": gap_over_seeds(stats, gap_keys),
        "config": C.TASKS[task],
        "train_loss_chosen": {m: b["train_loss"] for m, b in best.items()},
    }
    return best, res


def fmt(x, d: int) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _gap_rows(res: dict) -> list[str]:
    """cls_table.md's gap table: the LoRA → full-FT gap over seeds and the share each method closes
    (empty without `gap_over_seeds`). Kept apart from `markdown` so each table reads on its own."""
    lines = []
    if res.get("gap_over_seeds"):
        lines += [
            "",
            "| method | metric | LoRA → full-FT gap, mean ± std | method − LoRA, mean ± std | share of the gap closed, mean ± std |",
            "|---|---|---|---|---|",
        ]
        for m, g in res["gap_over_seeds"].items():
            for key, label, d in (
                ("test_accuracy", "test accuracy (points)", 1),
                ("train_loss_end", "train loss, last 40 steps", 3),
            ):
                x = g[key]
                sh = (
                    "n/a"
                    if x["share"] is None
                    else f"{100 * x['share']['mean']:+.0f}% ± {fmt(x['share']['std'] and 100 * x['share']['std'], 0)}%"
                )
                lines.append(
                    f"| {C.LABELS[m]} | {label} ({len(g['seeds'])} seeds) | {x['gap']['mean']:+.{d}f} ± {fmt(x['gap']['std'], d)} | "
                    f"{x['diff_vs_lora']['mean']:+.{d}f} ± {fmt(x['diff_vs_lora']['std'], d)} | {sh} |"
                )
    return lines


def _distance_rows(res: dict) -> list[str]:
    """cls_table.md's ΔW tables: cosine to full fine-tuning's update along training, and the
    final distances (each empty when its entry is missing)."""
    lines = []
    if res.get("update_distance_curves"):
        lines += [
            "",
            "| LR | method | cosine(ΔW_t, ΔW_t of full FT) at steps "
            + ", ".join(sorted(next(iter(next(iter(res["update_distance_curves"].values())).values())), key=int))
            + " |",
            "|---|---|---|",
        ]
        for lr, per in res["update_distance_curves"].items():
            for m, c in per.items():
                lines.append(
                    f"| {lr} | {C.LABELS[m]} | "
                    + ", ".join(f"{c[t]['cosine']:.2f}" for t in sorted(c, key=int))
                    + " |"
                )
    if res.get("update_distance_to_full_ft"):
        lines += [
            "",
            "| run (method @ LR) | ‖ΔW − ΔW_full‖ / ‖ΔW_full‖ | cosine(ΔW, ΔW_full) | ‖ΔW‖ / ‖ΔW_full‖ |",
            "|---|---|---|---|",
        ]
        for key, d in res["update_distance_to_full_ft"].items():
            m, lr = key.split("@")
            lines.append(
                f"| {C.LABELS[m]} @ {lr} | {d['rel_distance']:.3f} | {d['cosine']:.3f} | {d['norm_ratio']:.3f} |"
            )
    return lines


def markdown(res: dict) -> str:
    """cls_table.md: every run of the sweep, the chosen runs, the gap shares and the ΔW distances."""
    lines = [
        "| method | LR | seed | val acc % | val loss | test acc % | median s/step (shared CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(C.METHODS)}
    for r in sorted(res["runs"], key=lambda r: (order[r["method"]], r["lr"], r["seed"])):
        t = f"{r['test']['accuracy']:.1f}" if r.get("test") else "-"
        lines.append(
            f"| {C.LABELS[r['method']]} | {r['lr']:g} | {r['seed']} | {r['val']['accuracy']:.1f} | "
            f"{r['val']['loss']:.3f} | {t} | {r['median_step_s']:.1f} |"
        )
    lines += [
        "",
        "| method | chosen LR (validation) | bracketed | val acc % | test acc % | test loss |",
        "|---|---|---|---|---|---|",
    ]
    for m, c in res["chosen"].items():
        lines.append(
            f"| {C.LABELS[m]} | {c['lr']:g} | {c['bracketed']} | {c['val']['accuracy']:.1f} | "
            f"{c['test']['accuracy']:.1f} | {c['test']['loss']:.3f} |"
        )
    if res.get("seeds_at_chosen_lr"):
        lines += [
            "",
            "| method | LR (chosen on seed 0) | seeds | test acc % mean ± std | per seed | train loss, last 40 steps |",
            "|---|---|---|---|---|---|",
        ]
        for m, st in res["seeds_at_chosen_lr"].items():
            a, t = st["test_accuracy"], st["train_loss_end"]
            per = ", ".join(f"{v['test_accuracy']:.1f}" for v in st["per_seed"].values())
            lines.append(
                f"| {C.LABELS[m]} | {st['lr']:g} | {a['n']} | {a['mean']:.1f} ± {fmt(a['std'], 1)} | {per} | "
                f"{t['mean']:.3f} ± {fmt(t['std'], 3)} |"
            )
    lines += _gap_rows(res)
    if res.get("bootstrap"):
        lines += B.markdown(res["bootstrap"], C.LABELS, "reviews", "test accuracy (points)", scale=100, digits=1)
    lines += _distance_rows(res)
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/lora_pro_convergence")
    p.add_argument("--no_distances", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(a.work)
    runs = [r for r in load_runs(work) if r["method"] in C.METHODS]
    best, res = summarize(runs, "cls", gap_keys=("test_accuracy", "train_loss_end"))
    if "lora" in best and "full" in best:
        res["bootstrap"] = B.at_chosen_lrs(work, runs, best, test_rows)
        if not a.no_distances:
            base_sd = base_state()
            res["update_distance_to_full_ft"] = update_distances(work, best, runs, base_sd)
            res["update_distance_curves"] = update_distance_curves(work, runs, base_sd)
            plot_curves(res["update_distance_curves"])
    (HERE / "cls_results.json").write_text(json.dumps(res, indent=1))
    (HERE / "cls_table.md").write_text(markdown(res))
    plots(runs, best)
    print(json.dumps({k: v for k, v in res.items() if k not in ("runs", "train_loss_chosen")}, indent=1))


if __name__ == "__main__":
    main()
