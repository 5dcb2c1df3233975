"""Plot benchmarks/sfda/results.json → results.png: the earlier single-seed run beside the
mean ± std (and each seed) of the re-run, closed-set accuracy and universal H-score."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
CLOSED_ROWS = (
    ("source_only", "source only"),
    ("shot", "SHOT"),
    ("topk", "top-k (ours)"),
    ("universal", "universal"),
    ("centroid", "centroid\n(GeoImNet)"),
    ("topk_ce", "top-k CE\n(GeoPlace)"),
)
UNIVERSAL_ROWS = (("source_only", "source only"), ("universal", "+ universal"))


def _panel(ax, rows, old, new, metric):
    x = list(range(len(rows)))
    w = 0.38
    old_vals = [old.get(k, {}).get(metric) for k, _ in rows]
    b = ax.bar([i - w / 2 for i in x], [v or 0 for v in old_vals], w, color="#bbbbbb", label="earlier run (seed 0)")
    ax.bar_label(b, labels=[f"{v:.1f}" if v is not None else "" for v in old_vals], fontsize=7)
    stats = [new.get(k, {}).get(metric) for k, _ in rows]
    means = [s["mean"] if s else 0 for s in stats]
    errs = [s["std"] or 0 if s else 0 for s in stats]
    b = ax.bar([i + w / 2 for i in x], means, w, yerr=errs, capsize=3, color="#55a868", label="re-run, mean ± std")
    ax.bar_label(
        b, labels=[f"{s['mean']:.1f}\n(n={s['n']})" if s else "not run" for s in stats], fontsize=7, padding=6
    )
    for i, s in enumerate(stats):
        if s:
            ax.scatter([i + w / 2] * len(s["values"]), s["values"], s=8, color="black", zorder=3)
    ax.set_xticks(x, [label for _, label in rows], fontsize=8)
    ax.set_ylim(0, 110)
    ax.legend(fontsize=7, loc="upper left")


def main():
    r = json.loads((HERE / "results.json").read_text())
    old, summary = r.get("previous_single_seed_run", {}), r.get("summary", {})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [6, 2.5]})
    _panel(axes[0], CLOSED_ROWS, old.get("closed", {}), summary.get("closed", {}), "accuracy")
    axes[0].set_ylabel("optdigits top-1 accuracy (%)")
    axes[0].set_title("Closed set: MNIST → optdigits, stage 2 strategies after stage 1", fontsize=9)
    _panel(axes[1], UNIVERSAL_ROWS, old.get("universal", {}), summary.get("universal", {}), "h_score")
    axes[1].set_ylabel("H-score (threshold 0.5)")
    axes[1].set_title("Universal: digits 0-5 shared, 6-9 unknown", fontsize=9)
    fig.suptitle("EfficientNet-Lite0, two-stage source-free DA, on these data (see RESULTS.md)", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=120)


if __name__ == "__main__":
    main()
