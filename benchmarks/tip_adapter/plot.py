"""Draws key_averaging.png from key_averaging.json (see RESULTS.md)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


def main():
    data = json.loads((HERE / "key_averaging.json").read_text())
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    groups = [(m, k) for m in ("Tip-Adapter", "Tip-Adapter-F") for k in ("normalized", "raw")]
    for i, (method, mode) in enumerate(groups):
        accs = [r["test_accuracy"] for r in data["rows"] if r["method"] == method and r["key_averaging"] == mode]
        ax.bar(i, sum(accs) / len(accs), color="tab:blue" if mode == "normalized" else "tab:orange", alpha=0.7)
        ax.scatter([i] * len(accs), accs, color="k", s=12, zorder=3)
    ax.axhline(data["zero_shot"], color="gray", ls="--", label=f"zero-shot {data['zero_shot']:.2f}")
    ax.set_xticks(range(len(groups)), [f"{m}\n{k}" for m, k in groups], fontsize=8)
    ax.set_ylim(70, 76)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"testbed {data['suite']}, {data['shots']} shots, seeds {data['seeds']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "key_averaging.png", dpi=120)


if __name__ == "__main__":
    main()
