"""Compositional GZSL on the testbed: 128 seen and 32 unseen (colour, object) classes.

    nice -n 15 python benchmarks/tzsl/testbed_zsl.py [--seeds 0 1 2] [--variants attributes text]

Data: the testbed's "zsl" suite (suite seed 0; `hf_clipadapt.testbed.load_suite("zsl")`):
seen-train 4,096 images (32 per seen class), test-seen 6,400, test-unseen 1,600.
Features: the testbed CLIP's L2-normalised image embeddings (128-d). Class semantics,
two variants: binary attributes (one-hot colour ⊕ one-hot object, 26-d) and the
testbed text tower's embeddings of the class names (templates averaged, 128-d).

Rows, each over the seeds, with settings fixed before the first run:
* (text variant only) the testbed CLIP itself, zero-shot: image embeddings against the
  class-name embeddings, nothing trained (the same for every seed; added after the
  first run as a reference point);
* ESZSL, (γ, λ) ∈ {1e-2 … 1e3}² chosen by ZSL accuracy on a pseudo-unseen split of the
  seen classes (32 of the 128 held out, a different draw per seed), never on test data;
* TZSL inductive, TZSL transductive with an unconditional D2, and the paper's D2
  conditioned on Dec(x): the `fast` preset unchanged (its lr and syn_num were chosen
  on a pseudo-unseen split of Fashion-MNIST's seen classes), fixed epochs; the
  unlabelled pool is the test-unseen features, labels withheld; uniform unseen prior.
Metrics: per-class mean top-1 (%), ZSL accuracy, GZSL u / s / H. Diagnostic (reads test
labels, selects nothing): for each TZSL run, the share of test-unseen images whose
decoded pseudo-attribute Dec(x) is nearest (cosine) to their own class among all
classes, nearest to a seen class, and nearest to their own class among unseen ones.

Writes testbed_zsl.json (every run; the script resumes from it) and testbed_zsl.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_clipadapt.features import DEFAULT_CACHE_DIR, extract_features
from hf_clipadapt.tzsl import TZSLModel, ZSLData, pseudo_unseen_split

HERE = Path(__file__).resolve().parent
TZSL_METHODS = {
    "tzsl-inductive": dict(mode="inductive"),
    "tzsl-uncond-D2": dict(mode="transductive", conditional_d2=False),
    "tzsl-full": dict(mode="transductive", conditional_d2=True),
}
LABELS = {
    "clip-zero-shot": "testbed CLIP zero-shot (class names, no training)",
    "eszsl": "ESZSL",
    "tzsl-inductive": "TZSL inductive",
    "tzsl-uncond-D2": "TZSL unconditional D2",
    "tzsl-full": "TZSL full (D2 conditioned on Dec(x))",
}
METRICS = ("zsl", "gzsl_unseen", "gzsl_seen", "gzsl_H")


def fashion_benchmark():
    """run_tzsl_benchmark.py (the Fashion-MNIST benchmark): its ESZSL scoring and JSON writer."""
    spec = importlib.util.spec_from_file_location("run_tzsl_benchmark", HERE / "run_tzsl_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_data(variant: str) -> ZSLData:
    """The zsl suite as features + class semantics (`variant`: "attributes" or "text")."""
    from hf_clipadapt.testbed import TESTBED_TEMPLATES, load_suite, load_testbed_clip

    backbone = load_testbed_clip()
    suite = load_suite("zsl", seed=0)
    parts = {}
    for part in ("train", "test_seen", "test_unseen"):
        x, y = extract_features(
            backbone.encode_images,
            suite[part],
            backbone.image_transform(),
            split=f"zsl/{part}",
            cache_dir=DEFAULT_CACHE_DIR,
            cache_name=backbone.cache_name,
        )
        parts[f"{part}_features"], parts[f"{part}_labels"] = F.normalize(x.float(), dim=-1), y
    table = suite["classes"]
    if variant == "attributes":
        semantics = torch.tensor(table["attributes"], dtype=torch.float32)
    elif variant == "text":
        with torch.no_grad():
            semantics = backbone.zero_shot_classifier(table["name"], TESTBED_TEMPLATES).float()
    else:
        raise ValueError(f"unknown semantic variant {variant!r}; use 'attributes' or 'text'")
    seen = [i for i, s in enumerate(table["seen"]) if s]
    unseen = [i for i, s in enumerate(table["seen"]) if not s]
    return ZSLData(**parts, attributes=semantics, seen_classes=seen, unseen_classes=unseen, class_names=table["name"])


def run_eszsl(bench, data: ZSLData, seed: int, num_holdout: int) -> dict:
    val = pseudo_unseen_split(data, num_holdout=num_holdout, seed=seed)
    grid = [10.0**k for k in range(-2, 4)]
    best = max(((g, l) for g in grid for l in grid), key=lambda gl: bench.eszsl_scores(val, *gl)["zsl"])
    t0 = time.perf_counter()
    scores = bench.eszsl_scores(data, *best)
    return {**scores, "gamma": best[0], "lambda": best[1], "train_seconds": time.perf_counter() - t0}


def run_clip_zero_shot(data: ZSLData) -> dict:
    """The text variant's semantics are the CLIP's own class-name embeddings: score images against them."""
    from hf_clipadapt.metrics import gzsl_scores, per_class_accuracy

    unseen = torch.tensor(data.unseen_classes)
    zsl_logits = data.test_unseen_features @ data.attributes[unseen].T
    zsl = per_class_accuracy(unseen[zsl_logits.argmax(-1)], data.test_unseen_labels, data.unseen_classes)
    x = torch.cat([data.test_seen_features, data.test_unseen_features])
    y = torch.cat([data.test_seen_labels, data.test_unseen_labels])
    g = gzsl_scores(x @ data.attributes.T, y, data.seen_classes, data.unseen_classes)
    return {"zsl": zsl, "gzsl_unseen": g["unseen"], "gzsl_seen": g["seen"], "gzsl_H": g["H"], "train_seconds": 0.0}


@torch.no_grad()
def decoder_diagnostic(model: TZSLModel, data: ZSLData) -> dict:
    """Where Dec(x) of test-unseen images lands among the class semantic vectors (reads test labels)."""
    model.eval()
    pseudo = torch.cat(
        [
            model(data.test_unseen_features[i : i + 4096]).pseudo_attributes
            for i in range(0, len(data.test_unseen_labels), 4096)
        ]
    )
    sims = F.normalize(pseudo, dim=-1) @ F.normalize(model.class_attributes, dim=-1).T
    y, u = data.test_unseen_labels, torch.tensor(data.unseen_classes)
    return {
        "unseen_nearest_is_own_class": 100 * (sims.argmax(-1) == y).float().mean().item(),
        "unseen_nearest_is_a_seen_class": 100
        * torch.isin(sims.argmax(-1), torch.tensor(data.seen_classes)).float().mean().item(),
        "unseen_nearest_unseen_is_own_class": 100 * (u[sims[:, u].argmax(-1)] == y).float().mean().item(),
    }


def run_tzsl(data: ZSLData, method: str, seed: int) -> dict:
    torch.manual_seed(seed)  # the initial weights depend on it
    model = TZSLModel.from_data(data, "fast", **TZSL_METHODS[method])
    t0 = time.perf_counter()
    model.fit(data, seed=seed, progress=False)
    train_s = time.perf_counter() - t0
    return {
        **fashion_benchmark().table_names(model.evaluate(data)),
        "train_seconds": train_s,
        **decoder_diagnostic(model, data),
    }


def summarise(runs: dict) -> dict:
    out = {}
    for key, per_seed in runs.items():
        vals = list(per_seed.values())
        keys = [k for k in vals[0] if isinstance(vals[0][k], float) and k not in ("gamma", "lambda", "load_average")]
        out[key] = {
            k: {
                "mean": statistics.fmean(v[k] for v in vals),
                "std": statistics.pstdev(v[k] for v in vals),
                "min": min(v[k] for v in vals),
                "max": max(v[k] for v in vals),
            }
            for k in keys
        }
        out[key]["n_seeds"] = len(vals)
    return out


def plot(summary: dict, variants: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 4.6), squeeze=False)
    names = (("zsl", "ZSL acc"), ("gzsl_unseen", "GZSL u"), ("gzsl_seen", "GZSL s"), ("gzsl_H", "GZSL H"))
    colours = {m: f"C{i}" for i, m in enumerate(LABELS)}  # one colour per method in every panel
    for ax, variant in zip(axes[0], variants):
        methods = [m for m in LABELS if f"{variant}/{m}" in summary]
        w = 0.8 / max(len(methods), 1)
        for i, m in enumerate(methods):
            s = summary[f"{variant}/{m}"]
            ax.bar(
                [j + (i - (len(methods) - 1) / 2) * w for j in range(4)],
                [s[k]["mean"] for k, _ in names],
                w,
                yerr=[s[k]["std"] for k, _ in names],
                capsize=3,
                label=LABELS[m],
                color=colours[m],
            )
        ax.axhline(100 / 32, color="grey", ls=":", lw=1)
        ax.set_xticks(range(4), [t for _, t in names])
        ax.set_ylim(0, 100)
        ax.set_ylabel("per-class top-1 (%)")
        ax.set_title(f"semantics: {variant}")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Testbed compositional GZSL, 128 seen / 32 unseen (colour, object) classes (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["attributes", "text"])
    p.add_argument("--methods", nargs="+", default=["clip-zero-shot", "eszsl", *TZSL_METHODS])
    p.add_argument(
        "--eszsl_holdout", type=int, default=32, help="seen classes held out as pseudo-unseen for ESZSL's grid"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "testbed_zsl.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench = fashion_benchmark()
    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {}
    runs = state.setdefault("runs", {})
    t_start = time.perf_counter()
    for variant in args.variants:
        data = build_data(variant)
        state.setdefault("setup", {})[variant] = repr(data)
        for method in args.methods:
            for seed in args.seeds:
                key = f"{variant}/{method}"
                if str(seed) in runs.get(key, {}) or (method == "clip-zero-shot" and variant != "text"):
                    continue
                t0 = time.perf_counter()
                if method == "clip-zero-shot":
                    r = run_clip_zero_shot(data)
                else:
                    r = (
                        run_eszsl(bench, data, seed, args.eszsl_holdout)
                        if method == "eszsl"
                        else run_tzsl(data, method, seed)
                    )
                r["wall_seconds"], r["load_average"] = time.perf_counter() - t0, os.getloadavg()[0]
                runs.setdefault(key, {})[str(seed)] = r
                bench.atomic_json(state, out)
                print(
                    f"{key} seed {seed}: "
                    + "  ".join(f"{k} {r[k]:.1f}" for k in METRICS)
                    + f"  ({r['wall_seconds']:.0f}s)",
                    flush=True,
                )
    state["summary"] = summarise(runs)
    state.setdefault("wall_seconds_this_invocation", []).append(round(time.perf_counter() - t_start, 1))
    bench.atomic_json(state, out)
    plot(state["summary"], args.variants, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
