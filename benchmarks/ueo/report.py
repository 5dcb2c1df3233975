"""Tables (markdown) and a plot from benchmarks/ueo/results.json.

    python benchmarks/ueo/report.py   # prints the tables, writes results.png
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METRICS = ("per_class_accuracy", "auroc", "H")


def summarise(runs: list[dict]) -> dict:
    """{(setting, method): {metric: (mean, std, n)}}."""
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["setting"], r["method"]), []).append(r)
    out = {}
    for key, rows in groups.items():
        out[key] = {m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])), len(rows))
                    for m in METRICS}  # fmt: skip
    return out


def table(summary: dict, settings: list[str], methods: list[str]) -> str:
    lines = ["| setting | method | per-class acc. | AUROC | H | seeds |", "|---|---|---|---|---|---|"]
    for s in settings:
        for m in methods:
            if (s, m) not in summary:
                continue
            v = summary[(s, m)]
            cells = " | ".join(f"{v[k][0]:.2f} ± {v[k][1]:.2f}" for k in METRICS)
            lines.append(f"| {s} | {m} | {cells} | {v['H'][2]} |")
    return "\n".join(lines)


def plot(summary: dict, settings: list[str], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    width = 0.8 / len(methods)
    for ax, metric in zip(axes, METRICS):
        for j, m in enumerate(methods):
            means = [summary.get((s, m), {}).get(metric, (np.nan, 0, 0))[0] for s in settings]
            stds = [summary.get((s, m), {}).get(metric, (0, 0, 0))[1] for s in settings]
            ax.bar(np.arange(len(settings)) + j * width, means, width, yerr=stds, label=m)
        ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2, settings)
        ax.set_title(metric)
        lo = np.nanmin([summary[k][metric][0] for k in summary]) - 5
        ax.set_ylim(max(0, lo), 100)
    axes[0].legend(fontsize=7)
    fig.suptitle("UEO on the testbed open-set suite (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    results = json.loads((HERE / "results.json").read_text())
    summary = summarise(results["runs"])
    settings = [s for s in ("closed", "partial", "open", "open_partial") if any(k[0] == s for k in summary)]
    methods = [m for m in ("zero_shot", "information_maximization", "ueo", "ueo_cosine_weights")
               if any(k[1] == m for k in summary)]  # fmt: skip
    print(table(summary, settings, methods))
    plot(summary, settings, methods, HERE / "results.png")


if __name__ == "__main__":
    main()
