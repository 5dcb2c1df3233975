"""Tip-Adapter's cache keys on the testbed CLIP: the mean of normalised views (the
library's default) against the mean of raw views, then normalised (the official
`build_cache_model`, gaopengcuhk/Tip-Adapter utils.py L46-60; `key_averaging="raw"`).

    nice python benchmarks/tip_adapter/key_averaging.py [--seeds 1 2 3] [--shots 16]

For each seed: the CoOp K-shot draw (and its min(K, 4) validation shots) from the
`few_shot` suite's training pool; Tip-Adapter (training-free) and Tip-Adapter-F built
with each key averaging, everything else at its defaults (10 views, crop area 0.5-1
with flips, α/β searched on the validation shots). Test accuracy on the suite's test
split, which no choice reads. Also measures how far apart the two keys of an image are
(`crop_norms`). Writes key_averaging.json next to this script; plot.py draws it.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_clipadapt.clip import get_templates
from hf_clipadapt.data import sample_few_shot
from hf_clipadapt.metrics import accuracy
from hf_clipadapt.testbed import load_suite, load_testbed_clip
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

HERE = Path(__file__).resolve().parent


def crop_norm_spread(clip, train_pool, names, shots: int, seed: int) -> dict:
    """How much the two key averagings can differ on this data: the spread of the raw
    feature norms over one image's 10 crops, and the cosine between its two keys."""
    model = TipAdapterForImageClassification.from_clip(clip, names, get_templates("testbed"), key_averaging="raw")
    train = sample_few_shot(train_pool, shots=shots, seed=seed)["train"]
    raw, _ = model.encode_training_views(train, seed=seed, views=model.config.views)
    raw = raw.view(model.config.views, -1, raw.shape[-1]).double()
    norms = raw.norm(dim=-1)
    cos = (F.normalize(raw.mean(0), dim=-1) * F.normalize(F.normalize(raw, dim=-1).mean(0), dim=-1)).sum(-1)
    return dict(
        seed=seed,
        norm_cv_mean=(norms.std(0) / norms.mean(0)).mean().item(),
        norm_cv_max=(norms.std(0) / norms.mean(0)).max().item(),
        norm_range_over_mean=((norms.max(0).values - norms.min(0).values) / norms.mean(0)).mean().item(),
        key_cosine_min=cos.min().item(),
        key_cosine_mean=cos.mean().item(),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--suite", default="few_shot")
    parser.add_argument("--diagnostics-only", action="store_true", help="add crop_norms to an existing JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = load_testbed_clip()
    suite = load_suite(args.suite, seed=0)
    names = suite["train"].features["label"].names
    spread = crop_norm_spread(clip, suite["train"], names, args.shots, args.seeds[0])
    print(json.dumps(spread), flush=True)
    if args.diagnostics_only:
        out = json.loads((HERE / "key_averaging.json").read_text())
        (HERE / "key_averaging.json").write_text(json.dumps({**out, "crop_norms": spread}, indent=1))
        return
    probe = TipAdapterForImageClassification.from_clip(clip, names, get_templates("testbed"))
    test_x, test_y = probe.encode_dataset(suite["test"], split="test")
    rows = []
    for seed in args.seeds:
        for train_keys in (False, True):
            for mode in ("normalized", "raw"):
                start = time.perf_counter()
                model = TipAdapterForImageClassification.from_clip(
                    clip, names, get_templates("testbed"), key_averaging=mode, train_keys=train_keys
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(suite["train"], shots=args.shots, seed=seed)
                acc = accuracy(model.predict_features(test_x), test_y)
                row = dict(
                    seed=seed,
                    method="Tip-Adapter-F" if train_keys else "Tip-Adapter",
                    key_averaging=mode,
                    test_accuracy=acc,
                    alpha=model.config.alpha,
                    beta=model.config.beta,
                    seconds=time.perf_counter() - start,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    out = dict(
        suite=args.suite,
        shots=args.shots,
        seeds=args.seeds,
        zero_shot=accuracy(probe.predict_features(test_x), test_y),
        crop_norms=spread,
        rows=rows,
    )
    (HERE / "key_averaging.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
