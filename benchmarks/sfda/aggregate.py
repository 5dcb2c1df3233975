"""Merge the per-seed runs (runs/seed<k>.json and runs/seed<k>_<phase>.json, written by
run_mnist_optdigits.py --seed k)
into results.json: each seed's rows, and per row the mean, sample std and n over seeds.

The earlier single-seed run (before the fidelity fixes of issue 24) is kept in
results.json under "previous_single_seed_run", so old and new rows sit side by side.

Run:  python benchmarks/sfda/aggregate.py   (then plot_results.py)
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

HERE = Path(__file__).parent
CLOSED_METRICS = ("accuracy", "top3_accuracy", "train_seconds")
UNIVERSAL_METRICS = (
    "h_score",
    "known_accuracy",
    "unknown_accuracy",
    "closed_accuracy_on_shared",
    "median_normalized_entropy",
    "train_seconds",
)


def _stats(values: list[float]) -> dict:
    out = {"mean": statistics.fmean(values), "n": len(values), "values": values}
    out["std"] = statistics.stdev(values) if len(values) > 1 else None
    return out


def load_runs(folder: Path) -> dict[str, dict]:
    """{seed: run} from seed<k>.json, merged with the phases of seed<k>_<part>.json (phases run in
    separate processes, e.g. `--phases universal --out runs/seed0_universal.json`)."""
    runs: dict[str, dict] = {}
    for p in sorted(folder.glob("seed*.json"), key=lambda q: ("_" in q.stem, q.stem)):
        seed, _, part = p.stem.removeprefix("seed").partition("_")
        data = json.loads(p.read_text())
        if part:
            data = {k: v for k, v in data.items() if k != "setup"}
        runs.setdefault(seed, {}).update(data)
    return runs


def summarise(runs: dict[str, dict]) -> dict:
    """{"closed": {row: {metric: stats}}, "universal": {...}, "head_only": ...} over the seeds that have the row."""
    summary: dict = {"closed": {}, "universal": {}}
    for phase, metrics in (("closed", CLOSED_METRICS), ("universal", UNIVERSAL_METRICS)):
        rows = sorted({row for r in runs.values() for row, v in r.get(phase, {}).items() if isinstance(v, dict)})
        for row in rows:
            per_metric = {}
            for m in metrics:
                values = [r[phase][row][m] for r in runs.values() if m in r.get(phase, {}).get(row, {})]
                if values:
                    per_metric[m] = _stats(values)
            summary[phase][row] = per_metric
    head = [
        r["head_only"]["logistic_regression_on_frozen_features"]["accuracy"] for r in runs.values() if "head_only" in r
    ]
    if head:
        summary["head_only"] = _stats(head)
    return summary


def _cell(stats: dict | None, digits: int = 1) -> str:
    if not stats:
        return "not run"
    std = f" ± {stats['std']:.{digits}f}" if stats["std"] is not None else ""
    seeds = ", ".join(f"{v:.{digits}f}" for v in stats["values"])
    return f"{stats['mean']:.{digits}f}{std} ({seeds})"


def markdown_tables(results: dict) -> str:
    """The RESULTS.md tables: earlier run beside the re-run (mean ± std over seeds, then each seed)."""
    old, new = results.get("previous_single_seed_run", {}), results["summary"]
    lines = [
        "| model | earlier run, seed 0 (4,000 images, 10 + 5 epochs) | re-run (2,000 images, 5 + 5 epochs): mean ± std (each seed) | top-3, re-run |",
        "|---|---|---|---|",
    ]
    for row, label in (
        ("source_only", "stage 1, source only"),
        ("shot", "+ stage 2 `shot` (5 epochs)"),
        ("topk", "+ stage 2 `topk` (ours, 5 epochs)"),
        ("universal", "+ stage 2 `universal` (5 epochs)"),
        ("centroid", "+ stage 2 `centroid` (GeoImNet preset, 1 epoch)"),
        ("topk_ce", "+ stage 2 `topk_ce` (GeoPlace preset, 1 epoch)"),
    ):
        o = old.get("closed", {}).get(row, {}).get("accuracy")
        n = new["closed"].get(row, {})
        lines.append(
            f"| {label} | {f'{o:.1f}' if o is not None else '–'} | {_cell(n.get('accuracy'))} | "
            f"{_cell(n.get('top3_accuracy'))} |"
        )
    lines += ["", "| model | metric | earlier run, seed 0 | re-run: mean ± std (each seed) |", "|---|---|---|---|"]
    for row in ("source_only", "universal"):
        for m in (
            "h_score",
            "known_accuracy",
            "unknown_accuracy",
            "closed_accuracy_on_shared",
            "median_normalized_entropy",
        ):
            o = old.get("universal", {}).get(row, {}).get(m)
            d = 2 if m == "median_normalized_entropy" else 1
            lines.append(
                f"| {row} | {m} | {f'{o:.{d}f}' if o is not None else '–'} | "
                f"{_cell(new['universal'].get(row, {}).get(m), d)} |"
            )
    return "\n".join(lines)


def main():
    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "previous_single_seed_run" not in results:  # the first aggregation moves the old run aside
        results = {"previous_single_seed_run": {**results, "note": "seed 0 only, before the issue-24 fidelity fixes"}}
    runs = load_runs(HERE / "runs")
    for r in runs.values():
        for phase in ("closed", "universal"):
            for row in r.get(phase, {}).values():
                if isinstance(row, dict):
                    row.pop("history", None)  # the per-epoch losses stay in runs/
    if runs:
        results["setup"] = next(iter(runs.values()))["setup"] | {"seeds": sorted(runs, key=int)}
    results["seeds"] = runs
    results["summary"] = summarise(runs)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, path)
    (HERE / "tables.md").write_text(markdown_tables(results) + "\n")
    for phase, metric in (("closed", "accuracy"), ("universal", "h_score")):
        for row, stats in results["summary"][phase].items():
            s = stats.get(metric)
            if s:
                std = f" ± {s['std']:.1f}" if s["std"] is not None else ""
                print(
                    f"{phase:9s} {row:12s} {metric} {s['mean']:.1f}{std} (n={s['n']}: {[round(v, 1) for v in s['values']]})"
                )


if __name__ == "__main__":
    main()
