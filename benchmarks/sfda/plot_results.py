"""Plot benchmarks/sfda/results.json → results.png (closed-set accuracy, universal H-score)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def main():
    r = json.loads((HERE / "results.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [5, 3]})
    names, values, colours = [], [], []
    if "head_only" in r:
        names.append("head only\n(frozen, LR)")
        values.append(r["head_only"]["logistic_regression_on_frozen_features"]["accuracy"])
        colours.append("#999999")
    for key, label in (("source_only", "source only\n(stage 1)"), ("shot", "+ SHOT"), ("topk", "+ top-k"), ("universal", "+ universal")):
        if key in r.get("closed", {}):
            names.append(label)
            values.append(r["closed"][key]["accuracy"])
            colours.append("#4c72b0" if key == "source_only" else "#55a868")
    ax = axes[0]
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("optdigits top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Closed set: MNIST → optdigits (10 classes)")
    ax = axes[1]
    u = r.get("universal", {})
    keys = [k for k in ("source_only", "universal") if k in u]
    if keys:
        x = range(len(keys))
        width = 0.27
        for j, (metric, label) in enumerate((("known_accuracy", "known (per-class)"), ("unknown_accuracy", "unknown"), ("h_score", "H-score"))):
            b = ax.bar([i + (j - 1) * width for i in x], [u[k][metric] for k in keys], width, label=label)
            ax.bar_label(b, fmt="%.0f", fontsize=8)
        ax.set_xticks(list(x), ["source only" if k == "source_only" else "+ universal" for k in keys])
        ax.set_ylim(0, 125)
        ax.set_yticks(range(0, 101, 20))
        ax.legend(fontsize=8, loc="upper center", ncol=3)
        ax.set_title("Universal: digits 0-5 shared, 6-9 unknown")
    fig.suptitle("EfficientNet-Lite0, two-stage source-free DA, on these data (see RESULTS.md)", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=120)


if __name__ == "__main__":
    main()
