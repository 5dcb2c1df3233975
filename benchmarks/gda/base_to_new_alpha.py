"""GDA base-to-new on the testbed: the official heads (reused α) against the pseudo-new α rule.

    python benchmarks/gda/base_to_new_alpha.py [--shots 1 4 16] [--seeds 1 2 3] [--views 10]

GDA is fitted on K shots of the 32 base (colour, object) classes of the testbed
`base_to_new` suite (10 augmented views per shot, no flip, α on the base validation
shots). The 32 new classes have names only. Rows, on the same K-shot draw:

* zero-shot CLIP;
* official: the protocol of mrflogs/ICLR24 main_base2new.py: base head
  `covariance="class_mean_pinv"` (mean per-class covariance, pseudo-inverse; the
  "base_to_new" preset), new heads `head="official"` from the augmented views of the
  base shots (k = 64 nearest plus 16 text copies; KS precision about the text), base α
  reused;
* official heads, pseudo-new α: the same heads, the new heads' α from
  `select_new_class_alpha` (4 folds of held-out base classes whose heads are built the
  official way; the official α grid; ties to the smaller α);
* KS base head, official new heads, reused α: the few-shot base head (whose α the
  earlier rows reused) with the official new heads, to separate the two fixes;
* earlier library (v1): KS base head, `head="knn_mean"` new heads (mean of the k nearest
  plain shot features, the base classes' KS precision), reused α and pseudo-new α: the
  rows RESULTS.md reported before the fix, re-measured.

Nothing here reads new-class labels to choose anything. Also recorded, as diagnostics
that select nothing: new-class test accuracy for every α of the grid, for the official
and for the knn_mean heads (what an oracle with new-class labels would see).

Writes `base_to_new_alpha.json`, `base_to_new_alpha.png` next to this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.clip import get_templates
from hf_clipadapt.data import sample_few_shot
from hf_clipadapt.features import DEFAULT_CACHE_DIR, extract_features
from hf_clipadapt.gda import GDAForImageClassification
from hf_clipadapt.metrics import accuracy, harmonic_mean

HERE = Path(__file__).resolve().parent
OFFICIAL, OFFICIAL_PSEUDO = "official (reuse α)", "official heads, pseudo-new α"
KS_OFFICIAL = "KS base, official new heads (reuse α)"
V1, V1_PSEUDO = "v1: KS base, knn_mean heads (reuse α)", "v1: KS base, knn_mean heads, pseudo-new α"
ROWS = ("zero-shot", OFFICIAL, OFFICIAL_PSEUDO, KS_OFFICIAL, V1, V1_PSEUDO)


def make_encoder(backbone, cache_dir=DEFAULT_CACHE_DIR):
    """`encode(dataset, split)` -> L2-normalised features and labels, cached on disk when `cache_dir` is set."""

    def encode(dataset, split):
        x, y = extract_features(
            backbone.encode_images,
            dataset,
            backbone.image_transform(),
            split=split,
            cache_dir=cache_dir,
            cache_name=backbone.cache_name if cache_dir else None,
        )
        return torch.nn.functional.normalize(x.float(), dim=-1), y

    return encode


def _oracle(head, x, y, alphas) -> dict:
    """Diagnostic only: the new-class test accuracy at every α of the grid."""
    saved, out = head.config.alpha, {}
    for a in alphas:
        head.config.alpha = a
        out[str(a)] = accuracy(head(image_features=x).logits, y)
    head.config.alpha = saved
    return out


def run_one(
    backbone, suite, shots: int, seed: int, views: int, encode, cache_dir=DEFAULT_CACHE_DIR, k: int = 64
) -> dict:
    """Both base heads fitted on the same K shots of `suite["train"]`; every row evaluated on the same tests.

    Only `train` is used to fit and to choose α; `test_base` / `test_new` are read for
    the reported accuracies (and the oracle diagnostics) after every choice is made."""
    templates = get_templates("testbed")
    base_names = suite["train"].features["label"].names
    new_names = suite["test_new"].features["label"].names
    fits = {}
    for cov in ("class_mean_pinv", "ks"):
        fits[cov] = GDAForImageClassification.from_clip(
            backbone, base_names, templates, view_flip=False, covariance=cov
        )
        fits[cov].fit(suite["train"], shots=shots, seed=seed, views=views, cache_dir=cache_dir)
    shots_split = sample_few_shot(suite["train"], shots=shots, seed=seed)["train"]
    c = fits["ks"].config  # the views `fit` encoded (read back from the feature cache)
    view_x, view_y = fits["ks"].encode_dataset(
        shots_split,
        fits["ks"].augmented_views(seed, c.view_scale, c.view_flip),
        views=views,
        split="train",
        cache_dir=cache_dir,
    )
    shot_x, shot_y = encode(shots_split, f"b2n/train@{shots}-{seed}")
    kv, ks = min(k, len(view_y)), min(k, len(shot_y))
    pinv, ksfit = fits["class_mean_pinv"], fits["ks"]
    heads = {
        OFFICIAL: (pinv, pinv.new_classes_head(new_names, view_x, view_y, k=kv)),
        OFFICIAL_PSEUDO: (
            pinv,
            pinv.new_classes_head(new_names, view_x, view_y, k=kv, alpha_rule="pseudo_new", seed=seed),
        ),
        KS_OFFICIAL: (ksfit, ksfit.new_classes_head(new_names, view_x, view_y, k=kv)),
        V1: (ksfit, ksfit.new_classes_head(new_names, shot_x, shot_y, k=ks, head="knn_mean")),
        V1_PSEUDO: (
            ksfit,
            ksfit.new_classes_head(
                new_names, shot_x, shot_y, k=ks, head="knn_mean", alpha_rule="pseudo_new", seed=seed
            ),
        ),
    }
    # Every choice is made; only now are the test splits read.
    base_x, base_y = encode(suite["test_base"], "base_to_new/test_base")
    new_x, new_y = encode(suite["test_new"], "base_to_new/test_new")
    scale = ksfit.config.logit_scale
    base = {"zero-shot": accuracy(scale * base_x @ ksfit.text_weights.T, base_y)}
    new = {"zero-shot": accuracy(scale * new_x @ heads[V1][1].text_weights.T, new_y)}
    for row, (fit, head) in heads.items():
        base[row], new[row] = (
            accuracy(fit(image_features=base_x).logits, base_y),
            accuracy(head(image_features=new_x).logits, new_y),
        )
    alphas = ksfit.config.alphas
    return {
        "shots": shots,
        "seed": seed,
        "k_views": kv,
        "k_shots": ks,
        "base_alpha": {cov: f.config.alpha for cov, f in fits.items()},
        "new_alpha": {row: heads[row][1].config.alpha for row in (OFFICIAL_PSEUDO, V1_PSEUDO)},
        "pseudo_new_scores": {row: heads[row][1].config.alpha_scores for row in (OFFICIAL_PSEUDO, V1_PSEUDO)},
        "base": base,
        "new": new,
        "H": {r: harmonic_mean(base[r], new[r]) for r in ROWS},
        "new_accuracy_per_alpha_oracle": {
            "official": _oracle(heads[OFFICIAL][1], new_x, new_y, alphas),
            "knn_mean": _oracle(heads[V1][1], new_x, new_y, alphas),
        },
    }


def summarise(runs: list[dict], shots: list[int]) -> dict:
    out = {}
    for k in shots:
        sel = [r for r in runs if r["shots"] == k]
        out[str(k)] = {
            metric: {
                row: {
                    "mean": float(np.mean([r[metric][row] for r in sel])),
                    "std": float(np.std([r[metric][row] for r in sel])),
                }
                for row in ROWS
            }
            for metric in ("base", "new", "H")
        }
        out[str(k)]["alphas"] = {
            **{f"base ({cov})": [r["base_alpha"][cov] for r in sel] for cov in ("class_mean_pinv", "ks")},
            **{f"new ({row})": [r["new_alpha"][row] for r in sel] for row in (OFFICIAL_PSEUDO, V1_PSEUDO)},
        }
    return out


def plot(summary: dict, shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True)
    for ax, metric in zip(axes, ("base", "new", "H")):
        for row, style in zip(ROWS, ("k--", "C3o-", "C0s-", "C2^-", "C7o:", "C7s:")):
            m = [summary[str(k)][metric][row]["mean"] for k in shots]
            s = [summary[str(k)][metric][row]["std"] for k in shots]
            ax.errorbar(shots, m, yerr=s, fmt=style, capsize=3, label=row)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_xlabel("shots per base class")
        ax.set_title(f"{metric} accuracy (%)" if metric != "H" else "harmonic mean H (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "GDA base-to-new on the testbed: official heads (reused α / pseudo-new α) vs the earlier knn_mean heads"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    from hf_clipadapt.testbed import load_suite, load_testbed_clip

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--views", type=int, default=10, help="augmented views per shot (the paper's 10)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    backbone = load_testbed_clip()
    suite = load_suite("base_to_new", seed=0)
    encode = make_encoder(backbone)
    runs = []
    for k in args.shots:
        for s in args.seeds:
            runs.append(run_one(backbone, suite, k, s, args.views, encode))
            partial = {"runs": runs, "_meta": {"partial": True, "wall_time_s": round(time.time() - t0, 1)}}
            (HERE / "base_to_new_alpha.partial.json").write_text(json.dumps(partial, indent=1))
    summary = summarise(runs, args.shots)
    (HERE / "base_to_new_alpha.partial.json").unlink()
    meta = {"seeds": args.seeds, "shots": args.shots, "views": args.views, "wall_time_s": round(time.time() - t0, 1)}
    (HERE / "base_to_new_alpha.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "_meta": meta}, indent=1)
    )
    plot(summary, args.shots, HERE / "base_to_new_alpha.png")
    for k in args.shots:
        print(
            f"{k} shots:",
            {m: {r: round(summary[str(k)][m][r]["mean"], 1) for r in ROWS} for m in ("base", "new", "H")},
            summary[str(k)]["alphas"],
        )
    print(f"wall time {meta['wall_time_s']} s")


if __name__ == "__main__":
    main()
