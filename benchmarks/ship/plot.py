"""Draw `results.json` of base_to_new.py: base, new and H per method (mean ± std over seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def main():
    results = json.loads((HERE / "results.json").read_text())
    suites = results["suites"]
    fig, axes = plt.subplots(1, len(suites), figsize=(7 * len(suites), 4), squeeze=False)
    for ax, (name, suite) in zip(axes[0], suites.items()):
        rows = suite["summary"]
        order = ["zero-shot", "CoOp", "CLIP-Adapter", "Tip-Adapter-F"]  # each baseline, then it + SHIP
        methods = sorted(rows, key=lambda m: (order.index(m.removesuffix("+SHIP")), m.endswith("+SHIP")))
        x = np.arange(len(methods))
        for i, metric in enumerate(("base", "new", "H")):
            means = [rows[m][metric][0] for m in methods]
            stds = [rows[m][metric][1] for m in methods]
            ax.bar(x + (i - 1) * 0.27, means, 0.27, yerr=stds, label=metric, capsize=2)
        ax.set_xticks(x, methods, rotation=35, ha="right")
        lo = min(rows[m][k][0] for m in methods for k in ("base", "new", "H"))
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"testbed '{name}', {len(suite['per_seed'])} seeds, {results['settings']['shots']} shots")
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "base_to_new.png", dpi=120)


if __name__ == "__main__":
    main()
