"""Merge the full-protocol re-run (runs_full/seed<k>.json: 4,000 source images, 10 source + 5
target epochs, batch 64, 1 thread, SHOT's head initialisation) into results_full.json,
tables_full.md and results_full.png, beside the earlier single-seed run and the reduced re-run
that results.json keeps.

aggregate.py reads runs/ only (the reduced re-run); this script reuses its loading and
statistics on runs_full/ and leaves results.json, tables.md and results.png as they are.

Run:  python benchmarks/sfda/aggregate_full.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aggregate import _cell, _stats, load_runs, summarise

HERE = Path(__file__).parent
CLOSED_ROWS = (
    ("source_only", "stage 1, source only"),
    ("shot", "+ stage 2 `shot` (5 epochs)"),
    ("topk", "+ stage 2 `topk` (ours, 5 epochs)"),
    ("universal", "+ stage 2 `universal` (5 epochs)"),
    ("centroid", "+ stage 2 `centroid` (GeoImNet preset, 1 epoch)"),
    ("topk_ce", "+ stage 2 `topk_ce` (GeoPlace preset, 1 epoch)"),
)
UNIVERSAL_METRICS = (
    "h_score",
    "known_accuracy",
    "unknown_accuracy",
    "closed_accuracy_on_shared",
    "median_normalized_entropy",
)
COLUMNS = (
    "earlier run, seed 0",
    "reduced re-run (2,000 images, 5 + 5 epochs, default head init): mean ± std (each seed)",
    "full re-run (4,000 images, 10 + 5 epochs, SHOT head init): mean ± std (each seed)",
)


def _old(value, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if value is not None else "–"


def markdown_tables(old: dict, reduced: dict, full: dict, ablation: dict | None) -> str:
    """Closed-set top-1 and universal metrics: earlier run | reduced re-run | full re-run (each seed)."""
    head = f"| model | {' | '.join(COLUMNS)} | top-3, full re-run |"
    lines = [head, "|---|---|---|---|---|"]
    lines.append(f"| head only: logistic regression on frozen features | {_old(old.get('head_only', {}).get('logistic_regression_on_frozen_features', {}).get('accuracy'))} "
                 f"| {_cell(reduced.get('head_only'))} | {_cell(full.get('head_only'))} | – |")  # fmt: skip
    for row, label in CLOSED_ROWS:
        o = old.get("closed", {}).get(row, {}).get("accuracy")
        r, f = reduced["closed"].get(row, {}), full["closed"].get(row, {})
        lines.append(
            f"| {label} | {_old(o)} | {_cell(r.get('accuracy'))} | {_cell(f.get('accuracy'))} | {_cell(f.get('top3_accuracy'))} |"
        )
    o = old.get("ablation_stage1_without_ema_teacher", {}).get("accuracy")
    lines.append(f"| stage 1 without the EMA-teacher term (ablation) | {_old(o)} | not run | {_cell(ablation)} | – |")
    lines += [
        "",
        f"| model | metric | {' | '.join(COLUMNS)} |",
        "|---|---|---|---|---|",
    ]
    for row in ("source_only", "universal"):
        for m in UNIVERSAL_METRICS:
            d = 2 if m == "median_normalized_entropy" else 1
            o = old.get("universal", {}).get(row, {}).get(m)
            r, f = (
                reduced["universal"].get(row, {}).get(m),
                full["universal"].get(row, {}).get(m),
            )
            lines.append(f"| {row} | {m} | {_old(o, d)} | {_cell(r, d)} | {_cell(f, d)} |")
    return "\n".join(lines)


def plot(old: dict, reduced: dict, full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("closed", "accuracy", CLOSED_ROWS, "optdigits top-1 accuracy (%)"),
              ("universal", "h_score", (("source_only", "source only"), ("universal", "+ universal")), "H-score (threshold 0.5)"))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [6, 2.5]})
    for ax, (phase, metric, rows, ylabel) in zip(axes, panels):
        w = 0.27
        series = (
            (old, "earlier run (seed 0)", "#bbbbbb"),
            (reduced, "reduced re-run", "#8fbfa0"),
            (full, "full re-run, SHOT head init", "#2a7a48"),
        )
        for j, (source, label, colour) in enumerate(series):
            xs = [i + (j - 1) * w for i in range(len(rows))]
            cells = [source.get(phase, {}).get(k, {}).get(metric) for k, _ in rows]
            stats = [
                c if isinstance(c, dict) else ({"mean": c, "std": None, "values": [c]} if c is not None else None)
                for c in cells
            ]
            bars = ax.bar(xs, [s["mean"] if s else 0 for s in stats], w, yerr=[(s["std"] or 0) if s else 0 for s in stats],
                          capsize=2, color=colour, label=label)  # fmt: skip
            ax.bar_label(
                bars,
                labels=[f"{s['mean']:.1f}" if s else "n/r" for s in stats],
                fontsize=6,
                padding=4,
            )
            for x, s in zip(xs, stats):
                if s and len(s["values"]) > 1:
                    ax.scatter(
                        [x] * len(s["values"]),
                        s["values"],
                        s=6,
                        color="black",
                        zorder=3,
                    )
        ax.set_xticks(
            range(len(rows)),
            [label.split(" (")[0].replace("+ stage 2 ", "").strip("`") for _, label in rows],
            fontsize=7,
        )
        ax.set_ylim(0, 110)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_title(
        "Closed set: MNIST → optdigits (mean ± std over seeds; dots: each seed)",
        fontsize=9,
    )
    axes[1].set_title("Universal: digits 0-5 shared, 6-9 unknown", fontsize=9)
    fig.suptitle(
        "EfficientNet-Lite0, two-stage source-free DA, on these data (see RESULTS.md)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    previous = json.loads((HERE / "results.json").read_text())
    old, reduced = previous["previous_single_seed_run"], previous["summary"]
    runs = load_runs(HERE / "runs_full")
    ablation = [
        r["ablation_stage1_without_ema_teacher"]["accuracy"]
        for r in runs.values()
        if "ablation_stage1_without_ema_teacher" in r
    ]
    for r in runs.values():
        for phase in ("closed", "universal"):
            for row in r.get(phase, {}).values():
                if isinstance(row, dict):
                    row.pop("history", None)  # the per-epoch losses stay in runs_full/
        r.get("ablation_stage1_without_ema_teacher", {}).pop("history", None)
    full = summarise(runs)
    ablation_stats = _stats(ablation) if ablation else None
    results = {"setup": next(iter(runs.values()))["setup"] | {"seeds": sorted(runs, key=int)}, "seeds": runs, "summary": full,
               "ablation_stage1_without_ema_teacher": ablation_stats}  # fmt: skip
    tmp = HERE / "results_full.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, HERE / "results_full.json")
    (HERE / "tables_full.md").write_text(markdown_tables(old, reduced, full, ablation_stats) + "\n")
    plot(old, reduced, full, HERE / "results_full.png")
    for phase, metric in (("closed", "accuracy"), ("universal", "h_score")):
        for row, stats in full[phase].items():
            s = stats.get(metric)
            std = f" ± {s['std']:.1f}" if s["std"] is not None else ""
            print(
                f"{phase:9s} {row:12s} {metric} {s['mean']:.1f}{std} (n={s['n']}: {[round(v, 1) for v in s['values']]})"
            )


if __name__ == "__main__":
    main()
