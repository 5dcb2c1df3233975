"""Fashion-MNIST zero-shot benchmark: ESZSL vs TZSL inductive / unconditional-D2 / full.

Features: EfficientNet-Lite0 (ImageNet-1k) pooled features at 112 px; semantic
vectors: all-MiniLM-L6-v2 embeddings of one hand-written sentence per class (see
`make_features.py`, which writes the features file). Split, fixed: unseen = shirt,
bag, ankle boot; seen = the other seven classes.

Methods, each over 3 seeds:
* ESZSL (closed form), its (gamma, lambda) chosen on a pseudo-unseen split of the
  seen classes (2 seen classes held out), never on test data;
* TZSL inductive (no unlabelled data);
* TZSL transductive with an unconditional D2(x) (f-VAEGAN-D2 style);
* TZSL transductive with D2(x, Dec(x)) (the paper).
All TZSL runs use the `fast` preset with a fixed number of epochs. The unlabelled
pool is the test-unseen features, labels withheld; unseen conditions are uniform.

Outputs in benchmarks/tzsl/: results.json (every run; the script resumes from it),
RESULTS.md and tzsl_benchmark.png.

    nice -n 10 python benchmarks/tzsl/run_tzsl_benchmark.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_clipadapt.features import DEFAULT_CACHE_DIR
from hf_clipadapt.metrics import gzsl_scores, per_class_accuracy
from hf_clipadapt.tzsl import TZSLModel, TZSLTrainingArguments, load_features_file, pseudo_unseen_split
from hf_clipadapt.tzsl import functional as Fz

HERE = Path(__file__).resolve().parent
DEFAULT_FEATURES = DEFAULT_CACHE_DIR.parent / "tzsl" / "fashion_mnist_effnet112_minilm.safetensors"
METHODS = {
    "tzsl-inductive": dict(mode="inductive"),
    "tzsl-uncond-D2": dict(mode="transductive", conditional_d2=False),
    "tzsl-full": dict(mode="transductive", conditional_d2=True),
}
LABELS = {
    "eszsl": "ESZSL",
    "tzsl-inductive": "TZSL inductive",
    "tzsl-uncond-D2": "TZSL unconditional D2",
    "tzsl-full": "TZSL full (D2 conditioned on Dec(x))",
}


def atomic_json(obj, path: Path):
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- compact inputs
def compact(data, pca_dim: int | None):
    """Cheaper, label-free re-encodings for a 2-core CPU budget.

    * Attributes -> coordinates in an orthonormal basis of the span of the class
      vectors (10 classes: 10-d instead of 384-d). Lossless: norms and inner
      products, hence cosines and the L2-normalised decoder targets, are unchanged.
    * Image features -> PCA fitted on the seen-train features only (no unseen or
      test data), keeping `pca_dim` components. Lossy; None keeps the raw features.
    """
    Q, _ = torch.linalg.qr(data.attributes.T.double())
    parts = {"attributes": (data.attributes.double() @ Q).float()}
    info = {"attribute_dim": Q.shape[1]}
    if pca_dim:
        mean = data.train_features.mean(0)
        _, S, Vh = torch.linalg.svd((data.train_features - mean).double(), full_matrices=False)
        P = Vh[:pca_dim].T.float()
        for k in ("train", "test_seen", "test_unseen"):
            parts[f"{k}_features"] = (getattr(data, f"{k}_features") - mean) @ P
        info["pca_dim"], info["pca_explained_variance"] = pca_dim, float((S[:pca_dim] ** 2).sum() / (S**2).sum())
    return dataclasses.replace(data, **parts), info


# ----------------------------------------------------------------------------- ESZSL
def _eszsl_prepare(data):
    """Standardise with seen-train statistics (ESZSL has no bias term, so centring matters)."""
    mean, std = data.train_features.mean(0), data.train_features.std(0).clamp_min(1e-6)
    return (lambda x: (x - mean) / std), F.normalize(data.attributes, dim=-1)


def eszsl_scores(data, gamma, lam) -> dict:
    scale, S = _eszsl_prepare(data)
    seen, unseen = torch.tensor(data.seen_classes), torch.tensor(data.unseen_classes)
    # Train on seen classes only (local indices into S[seen]).
    to_local = torch.full((data.num_classes,), -1, dtype=torch.long)
    to_local[seen] = torch.arange(len(seen))
    V = Fz.eszsl_fit(scale(data.train_features), to_local[data.train_labels], S[seen], gamma, lam)
    zsl_logits = scale(data.test_unseen_features) @ V @ S[unseen].T
    zsl = per_class_accuracy(unseen[zsl_logits.argmax(-1)], data.test_unseen_labels, data.unseen_classes)
    x = torch.cat([data.test_seen_features, data.test_unseen_features])
    y = torch.cat([data.test_seen_labels, data.test_unseen_labels])
    g = gzsl_scores(scale(x) @ V @ S.T, y, data.seen_classes, data.unseen_classes)
    return {"zsl": zsl, "gzsl_unseen": g["unseen"], "gzsl_seen": g["seen"], "gzsl_H": g["H"]}


def run_eszsl(data, seed) -> dict:
    val = pseudo_unseen_split(data, num_holdout=2, seed=seed)
    grid = [10.0**k for k in range(-2, 4)]
    best = max(((g, l) for g in grid for l in grid), key=lambda gl: eszsl_scores(val, *gl)["zsl"])
    t0 = time.perf_counter()
    scores = eszsl_scores(data, *best)
    return {**scores, "gamma": best[0], "lambda": best[1], "train_seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- TZSL
# TZSLModel.evaluate's names (the package's metric vocabulary) → this benchmark's table names
TABLE_NAMES = {
    "zsl_accuracy": "zsl",
    "unseen_accuracy": "gzsl_unseen",
    "seen_accuracy": "gzsl_seen",
    "h_score": "gzsl_H",
}


def table_names(scores: dict) -> dict:
    return {TABLE_NAMES.get(k, k): v for k, v in scores.items()}


def run_tzsl(data, method, seed, overrides) -> dict:
    torch.manual_seed(seed)
    config, training = split_overrides(overrides)
    model = TZSLModel.from_data(data, "fast", **METHODS[method], **config)
    t0 = time.perf_counter()
    history = model.fit(data, seed=seed, args=training, progress=False).history_
    train_s = time.perf_counter() - t0
    c, t = model.config, model.training_args_
    return {
        **table_names(model.evaluate(data)),
        "train_seconds": train_s,
        "seconds_per_epoch": train_s / t.num_train_epochs,
        "epochs": t.num_train_epochs,
        "steps_per_epoch": t.steps_per_epoch,
        "hidden_dim": c.hidden_dim,
        "final_losses": history["epochs"][-1],
    }


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """The command line's overrides as (TZSLConfig fields, TZSLTrainingArguments fields)."""
    config = {k: v for k, v in overrides.items() if k == "hidden_dim"}
    training = {{"epochs": "num_train_epochs"}.get(k, k): v for k, v in overrides.items() if k != "hidden_dim"}
    return config, training


def time_steps(data, hidden_dim: int, steps: int, repeats: int) -> float:
    """Median seconds per generator step (incl. its 5 critic steps), full transductive method."""
    times = []
    for r in range(repeats):
        m = TZSLModel.from_data(data, "fast", hidden_dim=hidden_dim, decoder_hidden_dim=hidden_dim)
        t0 = time.perf_counter()
        m.fit(
            data,
            seed=r,
            progress=False,
            args=dict(num_train_epochs=1, steps_per_epoch=steps, decoder_pretrain_epochs=0, cls_epochs=0, syn_num=1),
        )
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


# ----------------------------------------------------------------------------- report
def summarise(runs: dict) -> dict:
    out = {}
    for method, per_seed in runs.items():
        vals = list(per_seed.values())
        out[method] = {
            k: {
                "median": statistics.median(v[k] for v in vals),
                "min": min(v[k] for v in vals),
                "max": max(v[k] for v in vals),
            }
            for k in ("zsl", "gzsl_unseen", "gzsl_seen", "gzsl_H", "train_seconds")
        }
        out[method]["n_seeds"] = len(vals)
        if "seconds_per_epoch" in vals[0]:
            out[method]["seconds_per_epoch"] = statistics.median(v["seconds_per_epoch"] for v in vals)
    return out


def results_tables(state: dict) -> str:
    """Markdown tables of the summary and the timing sweep (pasted into RESULTS.md)."""
    lines = ["| method | ZSL acc | GZSL u | GZSL s | GZSL H | train time (s) |", "|---|---|---|---|---|---|"]
    fmt = lambda d: f"{d['median']:.1f} ({d['min']:.1f}–{d['max']:.1f})"  # noqa: E731
    for m in LABELS:
        if m in state["summary"]:
            r = state["summary"][m]
            lines.append(
                f"| {LABELS[m]} | {fmt(r['zsl'])} | {fmt(r['gzsl_unseen'])} | {fmt(r['gzsl_seen'])} | {fmt(r['gzsl_H'])} | {r['train_seconds']['median']:.0f} |"
            )
    if state.get("timing"):
        lines += [
            "",
            "| hidden units (G, E, D1, D2, Dec) | s / step | load avg | minutes for the fast schedule |",
            "|---|---|---|---|",
        ]
        steps = state.get("fast_schedule_steps")
        for h, t in sorted(state["timing"].items(), key=lambda kv: int(kv[0])):
            total = f"{t['seconds_per_step'] * steps / 60:.1f}" if steps else "-"
            lines.append(f"| {h} | {t['seconds_per_step']:.2f} | {t['load_average']:.1f} | {total} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in LABELS if m in summary]
    metrics = [("zsl", "ZSL acc"), ("gzsl_unseen", "GZSL u"), ("gzsl_seen", "GZSL s"), ("gzsl_H", "GZSL H")]
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        med = [summary[m][k]["median"] for k, _ in metrics]
        err = [
            [med[j] - summary[m][k]["min"] for j, (k, _) in enumerate(metrics)],
            [summary[m][k]["max"] - med[j] for j, (k, _) in enumerate(metrics)],
        ]
        ax.bar(
            [j + (i - (len(methods) - 1) / 2) * w for j in range(len(metrics))],
            med,
            w,
            yerr=err,
            capsize=3,
            label=LABELS[m],
        )
    ax.axhline(100 / 3, color="grey", ls=":", lw=1, label="ZSL chance (3 unseen)")
    ax.set_xticks(range(len(metrics)), [t for _, t in metrics])
    ax.set_ylabel("per-class top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Fashion-MNIST, unseen = shirt / bag / ankle boot (median of 3 seeds, bars = min..max)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", default=str(DEFAULT_FEATURES), help="written by make_features.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["eszsl", *METHODS])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps_per_epoch", type=int, default=None)
    p.add_argument("--hidden_dim", type=int, default=None)
    p.add_argument("--timing_sizes", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--timing_steps", type=int, default=3)
    # One thread: on a shared, oversubscribed 2-core machine two OpenMP threads ran
    # 45x slower per step here (5.4 s vs 0.12 s) than one.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pca_dim", type=int, default=256, help="PCA width of the image features (0 = raw features)")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data, compact_info = compact(load_features_file(args.features), args.pca_dim or None)
    print(data, compact_info, flush=True)
    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {}
    state.setdefault("runs", {})
    overrides = {
        k: getattr(args, k) for k in ("epochs", "steps_per_epoch", "hidden_dim") if getattr(args, k) is not None
    }
    state["setup"] = {
        "features": Path(args.features).name,
        "data": repr(data),
        "class_names": data.class_names,
        "seen": data.seen_classes,
        "unseen": data.unseen_classes,
        "tzsl_overrides": overrides,
        "threads": args.threads,
        "compact": compact_info,
        "machine": platform.processor() or platform.machine(),
    }
    for method in args.methods:
        for seed in args.seeds:
            if str(seed) in state["runs"].get(method, {}):
                continue
            t0 = time.perf_counter()
            r = run_eszsl(data, seed) if method == "eszsl" else run_tzsl(data, method, seed, overrides)
            r["load_average"] = os.getloadavg()[0]
            state["runs"].setdefault(method, {})[str(seed)] = r
            atomic_json(state, out)
            print(
                f"{method} seed {seed}: ZSL {r['zsl']:.1f}  u {r['gzsl_unseen']:.1f}  s {r['gzsl_seen']:.1f}  H {r['gzsl_H']:.1f}  ({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
    timing = state.setdefault("timing", {})
    for h in args.timing_sizes:
        if str(h) not in timing:
            timing[str(h)] = {
                "seconds_per_step": time_steps(data, h, args.timing_steps, 3),
                "load_average": os.getloadavg()[0],
            }
            atomic_json(state, out)
            print(f"hidden {h}: {timing[str(h)]['seconds_per_step']:.2f} s/step", flush=True)
    state["summary"] = summarise(state["runs"])
    fast = TZSLTrainingArguments.from_preset("fast", **split_overrides(overrides)[1])
    steps = fast.steps_per_epoch or len(data.train_labels) // fast.batch_size
    state["fast_schedule_steps"] = fast.num_train_epochs * steps
    atomic_json(state, out)
    out.with_name("results_tables.md").write_text(results_tables(state) + "\n")
    plot(state["summary"], out.with_name("tzsl_benchmark.png"))
    print(json.dumps(state["summary"], indent=1))


if __name__ == "__main__":
    main()
