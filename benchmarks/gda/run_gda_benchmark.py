"""GDA vs few-shot baselines on real images with a real pretrained backbone, offline.

    python benchmarks/gda/run_gda_benchmark.py            # everything (needs `make assets-full`)
    python benchmarks/gda/run_gda_benchmark.py --stage features   # only encode (cached)

Backbone: EfficientNet-Lite0 (ImageNet-1k) pooled features, L2-normalised; no text
encoder exists offline, so every method here is the feature-only version (GDA's
x·Wᵀ + b without the zero-shot term, Tip-Adapter's cache term alone).
Data: Fashion-MNIST and MNIST; few-shot draws from a 10,000-image random subset of
the training split (CoOp protocol: K train + min(K, 4) validation per class),
tested on a 2,000-image random subset of the test split.

Writes results.json, RESULTS.md and accuracy_vs_shots.png next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.gda import GDADegenerateCovarianceWarning, fit_gda, gda_logits
from hf_clipadapt.metrics import accuracy

# examples/ holds the offline assets and baselines the benchmarks share (not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from baselines import logistic_probe, nearest_class_mean, select_tip_beta, tip_adapter_logits  # noqa: E402
from offline_assets import load_fashion_mnist, load_mnist  # noqa: E402
from offline_assets.few_shot_features import FewShotFeatures  # noqa: E402

HERE = Path(__file__).parent
LOADERS = {"fashion_mnist": load_fashion_mnist, "mnist": load_mnist}
METHODS = ["GDA (10 views)", "GDA (no views)", "Linear probe", "Tip-Adapter", "Nearest class mean"]


def evaluate_split(feats: FewShotFeatures, seed: int, shots: int) -> dict[str, float]:
    s = feats.split(seed, shots)
    k = feats.num_classes
    x_test, y_test = feats.test, feats.test_labels
    out = {}
    w, b = fit_gda(s.train_views, s.train_views_labels, k)
    out["GDA (10 views)"] = accuracy(gda_logits(x_test, w, b), y_test)
    with warnings.catch_warnings():  # 1-shot without views: the documented Σ = I fallback, expected here
        warnings.simplefilter("ignore", GDADegenerateCovarianceWarning)
        w, b = fit_gda(s.train, s.train_labels, k)
    out["GDA (no views)"] = accuracy(gda_logits(x_test, w, b), y_test)
    probe = logistic_probe(s.train, s.train_labels, s.val, s.val_labels, seed=seed)
    out["Linear probe"] = accuracy(torch.from_numpy(probe.predict(x_test.numpy())), y_test)
    beta = select_tip_beta(s.val, s.val_labels, s.cache_keys, s.train_labels, k)
    out["Tip-Adapter"] = accuracy(tip_adapter_logits(x_test, s.cache_keys, s.train_labels, k, beta), y_test)
    out["Nearest class mean"] = accuracy(x_test @ nearest_class_mean(s.train, s.train_labels, k).T, y_test)
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_cpu_time_one_thread(fn, repeats: int) -> float:
    """CPU seconds of `fn` on one thread: what its wall time is on an otherwise idle core,
    whatever else the machine is running."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def sklearn_lda(x: torch.Tensor, y: torch.Tensor):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x.numpy(), y.numpy())


def fit_time_table(
    real: dict[str, tuple[torch.Tensor, torch.Tensor, int]], repeats: int, sklearn_repeats: int
) -> list[dict]:
    rows = []
    for name, (x, y, k) in real.items():
        row = {"problem": name, "n": x.shape[0], "dim": x.shape[1], "classes": k}
        row["gda_float64_s"] = median_time(lambda: fit_gda(x, y, k), repeats)
        row["gda_float64_cpu_s_1_thread"] = median_cpu_time_one_thread(lambda: fit_gda(x, y, k), repeats)
        row["gda_float32_s"] = median_time(lambda: fit_gda(x, y, k, dtype=torch.float32), repeats)
        fitted = []
        row["sklearn_lda_s"] = median_time(lambda: fitted.append(sklearn_lda(x.double(), y)), sklearn_repeats)
        row["speedup_float64"] = row["sklearn_lda_s"] / row["gda_float64_s"]
        lda = fitted[-1]
        w, b = fit_gda(x, y, k)
        row["agreement_with_lda_%"] = 100.0 * float(
            (gda_logits(x, w, b).argmax(1).numpy() == lda.predict(x.double().numpy())).mean()
        )
        rows.append(row)
        print(f"fit time {name}: {row}", flush=True)
    return rows


def synthetic_problem(n=16_000, dim=512, classes=1_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = torch.nn.functional.normalize(centres[y] + 2.0 * torch.randn(n, dim, generator=g), dim=1)
    return x, y, classes


def timing_problems(feats: dict, args) -> dict:
    largest = max(args.shots)
    problems = {}
    for name, f in feats.items():
        s = f.split(args.seeds[0], largest)
        problems[f"{name}, {largest}-shot × {args.views} views"] = (s.train_views, s.train_views_labels, f.num_classes)
    problems["synthetic ImageNet-scale"] = synthetic_problem()
    return problems


def _write_json(report: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)


def plot(results: dict, shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, (dataset, per_method) in zip(axes[0], results.items()):
        for method in METHODS:
            mean = [per_method[method][str(k)]["mean"] for k in shots]
            std = [per_method[method][str(k)]["std"] for k in shots]
            ax.errorbar(shots, mean, yerr=std, marker="o", capsize=3, label=method, lw=2 if "GDA" in method else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{dataset} (EfficientNet-Lite0 features)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def _accuracy_tables(report: dict) -> list[str]:
    """RESULTS.md's accuracy table per dataset (best cell in bold); one of
    `write_markdown`'s sections, kept apart so each section reads on its own."""
    cfg = report["config"]
    lines = []
    for dataset, per_method in report["accuracy"].items():
        lines += [f"## {dataset}", "", "| method | " + " | ".join(f"{k}-shot" for k in cfg["shots"]) + " |"]
        lines.append("|---|" + "---|" * len(cfg["shots"]))
        for method in METHODS:
            cells = []
            best = {k: max(per_method[m][str(k)]["mean"] for m in METHODS) for k in cfg["shots"]}
            for k in cfg["shots"]:
                r = per_method[method][str(k)]
                cell = f"{r['mean']:.1f} ± {r['std']:.1f}"
                cells.append(f"**{cell}**" if r["mean"] == best[k] else cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _fit_time_section(report: dict) -> list[str]:
    """RESULTS.md's fit-time table (GDA vs scikit-learn LDA) and the note on machine load."""
    cfg = report["config"]
    lines = []
    reps = report.get("timing_repeats") or {"gda": cfg["repeats"], "sklearn": cfg["sklearn_repeats"]}
    lines += [
        f"Median wall time of the fit alone on features already in memory ({report['machine']}; "
        f"{reps.get('gda', '?')} runs of GDA, {reps.get('sklearn', '?')} of scikit-learn), "
        "GDA (`fit_gda`, float64 or float32 accumulation) vs scikit-learn "
        '`LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`, same features, same process. '
        "Agreement = share of training points on which the two classifiers predict the same class.",
        "",
        "| problem | N × D, classes | GDA float64 (s) | GDA float64, CPU s on 1 thread | GDA float32 (s) | sklearn LDA (s) "
        "| speed-up (float64) | agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["fit_time"]:
        cpu = r.get("gda_float64_cpu_s_1_thread")
        lines.append(
            f"| {r['problem']} | {r['n']:,} × {r['dim']}, {r['classes']:,} | {r['gda_float64_s']:.3f} | "
            f"{'-' if cpu is None else format(cpu, '.3f')} | "
            f"{r['gda_float32_s']:.3f} | {r['sklearn_lda_s']:.2f} | {r['speedup_float64']:.0f}× | "
            f"{r['agreement_with_lda_%']:.1f}% |"
        )
    load = report.get("load_average_during_timing")
    load_text = f"a load average of {load:.1f}" if load is not None else "an unrecorded load"
    lines += [
        "",
        f"The 2-core machine was shared with other jobs during this run ({load_text}), so absolute times are",
        "inflated and wobble between runs; the speed-up is measured in the same process on the same features.",
        "The CPU-time column (one thread, `time.process_time`) is what the fit costs on an idle core.",
        "The issue's targets for the synthetic problem are < 0.25 s (float64) and ≥ 15× faster than scikit-learn.",
        "",
        "## Reading the numbers",
        "",
    ]
    return lines


def _reading_section(report: dict) -> list[str]:
    """RESULTS.md's "Reading the numbers" bullets, computed from the accuracy table."""
    cfg = report["config"]
    lines = []
    for dataset, per_method in report["accuracy"].items():
        k = str(max(cfg["shots"]))
        gda, lp, ncm = (per_method[m][k]["mean"] for m in ("GDA (10 views)", "Linear probe", "Nearest class mean"))
        views_gain = gda - per_method["GDA (no views)"][k]["mean"]
        lines.append(
            f"- {dataset}, {k}-shot: GDA {gda:.1f} vs linear probe {lp:.1f} ({gda - lp:+.1f}) vs nearest class mean "
            f"{ncm:.1f} ({gda - ncm:+.1f}); the 10 augmented views change GDA by {views_gain:+.1f}."
        )
    k1 = str(min(cfg["shots"]))
    if all(pm["Linear probe"][k1]["mean"] > pm["GDA (10 views)"][k1]["mean"] for pm in report["accuracy"].values()):
        lines.append(
            f"- At {k1} shot(s) the linear probe leads: GDA then estimates a 1280-d covariance from a few crops per class."
        )
    lines += [
        "- Augmented views matter little on these centred grayscale images; they matter most where 1-shot GDA would",
        '  otherwise have no within-class scatter at all (the "no views" 1-shot column is the Σ = I fallback).',
        "",
    ]
    return lines


def write_markdown(report: dict, path: Path) -> None:
    cfg = report["config"]
    lines = [
        "# GDA on real images: EfficientNet-Lite0 features, Fashion-MNIST and MNIST",
        "",
        "Reproduce with `make bench-gda` (or `python benchmarks/gda/run_gda_benchmark.py`). Features are cached,",
        "so a re-run takes seconds. These are small-scale stand-ins for the paper's CLIP setup, reported as",
        "*measured on these data*, not as a reproduction of the paper's tables.",
        "",
        f"- Backbone: EfficientNet-Lite0 (ImageNet-1k), {cfg['size']} px, pooled 1280-d features, L2-normalised.",
        f"- Few-shot draws: CoOp protocol (`sample_few_shot`), K train + min(K, 4) validation images per class, from a "
        f"{cfg['pool_size']:,}-image random subset of the training split; seeds {cfg['seeds']}.",
        f"- Test: {cfg['test_size']:,} random test images. Mean ± std over seeds, accuracy in %.",
        f"- GDA (10 views): each training image encoded under {cfg['views']} random-resized-crop (0.5–1) + flip views, all "
        "kept as samples (the paper's recipe); GDA (no views): plain features only (1-shot falls back to Σ = I, i.e. "
        "Euclidean nearest class mean, with a warning).",
        "- Linear probe: scikit-learn LogisticRegression (L-BFGS), C ∈ {0.1, 1, 10, 100, 1000} picked on validation.",
        "- Tip-Adapter (training-free): cache keys = mean of the 10 augmented views per image, β picked on validation; "
        "no zero-shot term (no text encoder).",
        "- Nearest class mean: cosine similarity to the normalised class means of the plain features.",
        "- No text classifier exists for this backbone, so GDA here is x·Wᵀ + b alone (no α ensemble).",
        "",
    ]
    lines += _accuracy_tables(report)
    lines += ["![accuracy vs shots](accuracy_vs_shots.png)", "", "## Fit time", ""]
    lines += _fit_time_section(report)
    lines += _reading_section(report)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line; kept apart so `main` reads as the run's stages."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"], choices=sorted(LOADERS))
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--size", type=int, default=112, help="input resolution (px)")
    parser.add_argument("--views", type=int, default=10, help="augmented views per training image")
    parser.add_argument("--pool-size", type=int, default=10_000, help="training images the few-shot draws come from")
    parser.add_argument("--test-size", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="GDA timing repeats (median)")
    parser.add_argument("--sklearn-repeats", type=int, default=3, help="scikit-learn LDA timing repeats (median)")
    parser.add_argument(
        "--stage",
        choices=["features", "all", "timing", "report"],
        default="all",
        help="features: only encode (cached); timing: redo the fit-time table into results.json; "
        "report: rewrite RESULTS.md and the plot from results.json",
    )
    parser.add_argument("--output-dir", type=Path, default=HERE)
    return parser


def encode_features(args) -> dict:
    """Encode (or load from the cache) the few-shot pools and test sets of `args.datasets`.

    Args:
        args: the parsed command line (datasets, pool/test sizes, shots, seeds, size, views).
    Returns:
        {dataset name: FewShotFeatures}.
    """
    feats = {}
    for name in args.datasets:
        start = time.perf_counter()
        pool = LOADERS[name]("train", limit=args.pool_size, seed=0)
        test = LOADERS[name]("test", limit=args.test_size, seed=0)
        feats[name] = FewShotFeatures(
            pool, test, shots=args.shots, seeds=args.seeds, size=args.size, views=args.views, desc=name
        )
        print(
            f"{name}: features ready in {time.perf_counter() - start:.1f}s "
            f"({feats[name].num_used} training images × (1 + {args.views} views), {len(test)} test)",
            flush=True,
        )
    return feats


def accuracy_tables(feats: dict, args) -> dict:
    """Accuracy of every method for each dataset, shot count and seed, with mean and std over seeds.

    Args:
        feats: {dataset name: FewShotFeatures} from `encode_features`.
        args: the parsed command line (shots, seeds).
    Returns:
        {dataset: {method: {"<K>": {"mean", "std", "per_seed"}}}}.
    """
    accuracy_table = {}
    for name, f in feats.items():
        runs = {(seed, k): evaluate_split(f, seed, k) for seed in args.seeds for k in args.shots}
        accuracy_table[name] = {
            m: {
                str(k): {
                    "mean": float(np.mean([runs[s, k][m] for s in args.seeds])),
                    "std": float(np.std([runs[s, k][m] for s in args.seeds])),
                    "per_seed": [runs[s, k][m] for s in args.seeds],
                }
                for k in args.shots
            }
            for m in METHODS
        }
        for k in args.shots:
            print(
                name,
                f"{k:>2}-shot",
                {m: round(accuracy_table[name][m][str(k)]["mean"], 1) for m in METHODS},
                flush=True,
            )
    return accuracy_table


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.stage == "report":
        report = json.loads((args.output_dir / "results.json").read_text())
        plot(report["accuracy"], report["config"]["shots"], args.output_dir / "accuracy_vs_shots.png")
        write_markdown(report, args.output_dir / "RESULTS.md")
        return

    feats = encode_features(args)
    if args.stage == "features":
        return

    if args.stage == "timing":
        path = args.output_dir / "results.json"
        report = json.loads(path.read_text())
        report["fit_time"] = fit_time_table(timing_problems(feats, args), args.repeats, args.sklearn_repeats)
        report["load_average_during_timing"] = os.getloadavg()[0]
        report["timing_repeats"] = {"gda": args.repeats, "sklearn": args.sklearn_repeats}
        _write_json(report, path)
        plot(report["accuracy"], report["config"]["shots"], args.output_dir / "accuracy_vs_shots.png")
        write_markdown(report, args.output_dir / "RESULTS.md")
        return

    accuracy_table = accuracy_tables(feats, args)

    fit_rows = fit_time_table(timing_problems(feats, args), args.repeats, args.sklearn_repeats)
    load_average = os.getloadavg()[0]

    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads",
        "accuracy": accuracy_table,
        "fit_time": fit_rows,
        "load_average_during_timing": load_average,
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_json(report, out / "results.json")
    plot(accuracy_table, args.shots, out / "accuracy_vs_shots.png")
    write_markdown(report, out / "RESULTS.md")
    print(f"wrote {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
