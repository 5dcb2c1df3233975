"""Tables and the accuracy-vs-queries plot from results.json (written by run_craft.py).

    python benchmarks/craft/report.py [--results benchmarks/craft/results.json]

Prints the Markdown tables that RESULTS.md quotes (the current runs, and the runs of the
code before the official losses and defaults, results_before_fix.json, at the budgets
both have) and writes accuracy_vs_queries.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
METHODS = (
    "prompt_only",
    "refinement_only",
    "craft",
    "prompt_only_official_scale",
    "craft_official_scale",
    "craft_clean_views",
)


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return "–"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def curves(results) -> dict:
    """method -> budget -> [test accuracy per seed]."""
    out = {}
    for run in results["runs"]:
        if run["method"] in METHODS:
            for budget, point in run["curve"].items():
                out.setdefault(run["method"], {}).setdefault(int(budget), []).append(point["test"])
    return out


def tables(results) -> str:
    c = curves(results)
    budgets = sorted({b for m in c.values() for b in m})
    coop = [r for r in results["runs"] if r["method"] == "coop"]
    seeds = sorted({r["seed"] for r in results["runs"]})
    lines = [
        f"Test accuracy (%), testbed few_shot suite, {results['shots']} shots, seeds {seeds} (mean ± std over seeds)",
        "",
        "| method | " + " | ".join(f"{b} queries" for b in budgets) + " |",
        "|---" * (len(budgets) + 1) + "|",
        f"| zero-shot | {results['zero_shot']:.2f} (1 query) |" + " |" * (len(budgets) - 1),
    ]
    for method in METHODS:
        if method in c:
            lines.append(f"| {method} | " + " | ".join(mean_std(c[method].get(b, [np.nan])) for b in budgets) + " |")
    if coop:
        lines.append(
            f"| CoOp (white-box) | {mean_std([r['accuracy'] for r in coop])} (gradients, no query budget) |"
            + " |" * (len(budgets) - 1)
        )
    if results.get("sigma_selection"):
        lines += [
            "",
            f"CMA-ES σ chosen on validation shots: {results.get('sigma')} (validation accuracy per σ: "
            f"{results.get('sigma_selection')})",
        ]
    lines += [""]
    lines += ["| method | wall time (s, mean) | user-side memory (MB) |", "|---|---|---|"]
    for method in (*METHODS, "coop"):
        runs = [r for r in results["runs"] if r["method"] == method]
        if runs:
            mem = np.mean([r["memory"]["total"] for r in runs]) / 2**20
            lines.append(f"| {method} | {np.mean([r['seconds'] for r in runs]):.0f} | {mem:.2f} |")
    return "\n".join(lines)


def before_after(before, after) -> str:
    """Old rows beside new ones at the budgets both runs read."""
    old, new = curves(before), curves(after)
    budgets = sorted({b for m in new.values() for b in m} & {b for m in old.values() for b in m})
    lines = [
        "| method | " + " | ".join(f"before, {b} q | now, {b} q" for b in budgets) + " |",
        "|---" * (2 * len(budgets) + 1) + "|",
    ]
    for method in METHODS:
        if method in new:
            cells = [f"{mean_std(old.get(method, {}).get(b, [np.nan]))} | {mean_std(new[method][b])}" for b in budgets]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = curves(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in c.items():
        budgets = sorted(points)
        means = [np.mean(points[b]) for b in budgets]
        stds = [np.std(points[b]) for b in budgets]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.axhline(results["zero_shot"], color="gray", linestyle="--", label="zero-shot")
    coop = [r["accuracy"] for r in results["runs"] if r["method"] == "coop"]
    if coop:
        ax.axhline(np.mean(coop), color="black", linestyle=":", label="CoOp (white-box)")
    ax.set_xscale("log", base=2)
    ticks = sorted({b for points in c.values() for b in points})
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.set_xlabel("training queries (one = one prompt set scored on the shots)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"CraFT on the testbed CLIP, {results['shots']} shots")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", default=str(HERE / "results.json"))
    p.add_argument("--plot", default=str(HERE / "accuracy_vs_queries.png"))
    p.add_argument("--before", default=str(HERE / "results_before_fix.json"))
    args = p.parse_args()
    results = json.loads(Path(args.results).read_text())
    print(tables(results))
    if Path(args.before).is_file():
        print("\nBefore (library losses and defaults) vs now:\n")
        print(before_after(json.loads(Path(args.before).read_text()), results))
    plot(results, args.plot)


if __name__ == "__main__":
    main()
