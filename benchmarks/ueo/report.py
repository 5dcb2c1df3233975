"""Tables (markdown) and a plot from benchmarks/ueo/results.json (and the other results_*.json).

Since issue 24, `auroc`/`H` rank by the official score (max softmax of unscaled cosines) and
`auroc_scaled`/`H_scaled` by the max softmax of the scaled logits; in results_before_issue24.json
(and the older results_*.json) `auroc` is the scaled ranking, and training clipped gradients at 1.0.

    python benchmarks/ueo/report.py   # prints the tables, writes results.png
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METRICS = ("per_class_accuracy", "auroc", "H")
EXTRA = ("auroc_scaled", "H_scaled")  # rows since issue 24: the AUROC reported before, beside the official one


# evaluate's names before issue 26 (the stored results_*.json use them) → the names the tables use
_OLD_NAMES = {"h_score": "H", "h_score_scaled": "H_scaled", "h_score_energy": "H_energy"}


def _old_names(run: dict) -> dict:
    return {_OLD_NAMES.get(k, k): v for k, v in run.items()}


def summarise(runs: list[dict]) -> dict:
    """{(setting, method): {metric: (mean, std, n)}}."""
    runs = [_old_names(r) for r in runs]
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["setting"], r["method"]), []).append(r)
    out = {}
    for key, rows in groups.items():
        present = [m for m in METRICS + EXTRA if all(m in r for r in rows)]
        out[key] = {
            m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])), len(rows)) for m in present
        }
    return out


def table(summary: dict, settings: list[str], methods: list[str]) -> str:
    extra = [k for k in EXTRA if all(k in v for v in summary.values())]
    head = "| setting | method | per-class acc. | AUROC | H |" + "".join(f" {k} |" for k in extra) + " seeds |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for s in settings:
        for m in methods:
            if (s, m) not in summary:
                continue
            v = summary[(s, m)]
            cells = " | ".join(f"{v[k][0]:.2f} ± {v[k][1]:.2f}" for k in METRICS + tuple(extra))
            lines.append(f"| {s} | {m} | {cells} | {v['H'][2]} |")
    return "\n".join(lines)


def deltas(runs: list[dict]) -> dict:
    """{(setting, method): {metric: [method − zero-shot, per seed]}} (paired: same seed, same data)."""
    runs = [_old_names(r) for r in runs]
    base = {(r["seed"], r["setting"]): r for r in runs if r["method"] == "zero_shot"}
    out: dict = {}
    for r in runs:
        z = base.get((r["seed"], r["setting"]))
        if r["method"] != "zero_shot" and z is not None:
            row = out.setdefault((r["setting"], r["method"]), {m: [] for m in METRICS})
            for m in METRICS:
                row[m].append(r[m] - z[m])
    return out


def plot(runs: list[dict], settings: list[str], methods: list[str], path: Path, title: str) -> None:
    """Paired differences to zero-shot CLIP (mean ± std over seeds), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = deltas(runs)
    trained = [m for m in methods if m != "zero_shot"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    width = 0.8 / max(1, len(trained))
    for ax, metric in zip(axes, METRICS):
        for j, m in enumerate(trained):
            vals = [d.get((s, m), {}).get(metric, [np.nan]) for s in settings]
            ax.bar(
                np.arange(len(settings)) + j * width,
                [np.mean(v) for v in vals],
                width,
                yerr=[np.std(v) for v in vals],
                label=m,
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2, settings)
        ax.set_title(f"Δ {metric} vs zero-shot (points)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def weights_table(weights: dict) -> str:
    lines = [
        "| seed | w from | mean | std | min | max | max/min | AUROC of w (known vs unknown) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, row in sorted(weights.items()):
        for kind, v in row.items():
            lines.append(
                f"| {seed} | {kind} | {v['mean']:.3f} | {v['std']:.3f} | {v['min']:.3f} | {v['max']:.3f} | "
                f"{v['ratio_max_min']:.2f} | {v['auroc_known_vs_unknown']:.2f} |"
            )
    return "\n".join(lines)


# Before issue 24, "ueo" took its weights from the scaled logits and "ueo_cosine_weights" from
# unscaled cosines; now "ueo" (the default) takes the official cosine weights.
OLD_NAME = {
    "zero_shot": "zero_shot",
    "information_maximization": "information_maximization",
    "ueo": "ueo_cosine_weights",
    "ueo_logit_weights": "ueo",
}


def old_vs_new(new_runs: list[dict], old_runs: list[dict]) -> str:
    """Paired (same seed, setting, weights) new − old: per-class accuracy; AUROC of the same
    (scaled) ranking, which isolates the training change (no clipping, log ε); and the
    official AUROC against the old scaled one (metric and training change together)."""
    old = {(r["seed"], r["setting"], r["method"]): r for r in old_runs}
    groups: dict = {}
    for r in new_runs:
        o = old.get((r["seed"], r["setting"], OLD_NAME[r["method"]]))
        if o is not None:
            groups.setdefault((r["setting"], r["method"]), []).append(
                (
                    r["per_class_accuracy"] - o["per_class_accuracy"],
                    r["auroc_scaled"] - o["auroc"],
                    r["auroc"] - o["auroc"],
                )
            )
    lines = [
        "| setting | method (old name) | Δ per-class acc. | Δ AUROC, same scaled ranking | official AUROC − old AUROC | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for (setting, method), rows in sorted(groups.items(), key=lambda kv: (SETTINGS.index(kv[0][0]), kv[0][1])):
        cells = " | ".join(f"{np.mean(c):+.2f} (max abs {np.max(np.abs(c)):.2f})" for c in zip(*rows))
        lines.append(f"| {setting} | {method} ({OLD_NAME[method]}) | {cells} | {len(rows)} |")
    return "\n".join(lines)


SETTINGS = ["closed", "partial", "open", "open_partial"]


def orders(summary):
    settings = [s for s in ("closed", "partial", "open", "open_partial") if any(k[0] == s for k in summary)]
    methods = [
        m
        for m in ("zero_shot", "information_maximization", "ueo", "ueo_logit_weights", "ueo_cosine_weights")
        if any(k[1] == m for k in summary)
    ]
    return settings, methods


def main():
    results = json.loads((HERE / "results.json").read_text())
    summary = summarise(results["runs"])
    settings, methods = orders(summary)
    print(f"## main ({results['config']})\n")
    print(table(summary, settings, methods))
    print("\n## weights\n")
    print(weights_table(results.get("weights", {})))
    print("\n## speed\n", results.get("speed"))
    cfg = results["config"]
    plot(
        results["runs"],
        settings,
        methods,
        HERE / "results.png",
        f"UEO on the testbed open-set suite: {cfg['epochs']} epochs, lr {cfg['learning_rate']:g}, "
        f"{len({r['seed'] for r in results['runs']})} seeds; official AUROC, no gradient clipping",
    )
    before = HERE / "results_before_issue24.json"
    if before.exists():
        print("\n## new − before issue 24 (paired)\n")
        print(old_vs_new(results["runs"], json.loads(before.read_text())["runs"]))
    for extra in sorted(HERE.glob("results_*.json")):
        other = json.loads(extra.read_text())
        summary = summarise(other["runs"])
        print(f"\n## {extra.name} ({other['config']})\n")
        print(table(summary, *orders(summary)))


if __name__ == "__main__":
    main()
