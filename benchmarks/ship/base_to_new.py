"""SHIP on the testbed CLIP: base-to-new with CoOp, CLIP-Adapter and Tip-Adapter-F,
each alone and with SHIP's synthesized features of the new classes.

    python benchmarks/ship/base_to_new.py [--seeds 1 2 3] [--shots 16] [--suites base_to_new few_shot]

Protocol (Zhou et al., CVPR 2022), for each seed:
* K shots per base class (and the CoOp validation shots, min(K, 4) per class) are
  drawn from the suite's training pool; new classes have names only.
* "base_to_new" suite: the testbed's own split (32 base colour-object classes, 32
  held-out ones). "few_shot" suite: its 16 objects split by
  `hf_clipadapt.data.base_new_class_split` (the first ⌈n/2⌉ label ids are base, as
  in CoOp's `subsample_classes`).
* Baselines train on the base classes; new classes are scored with `for_classes`
  (CoOp's context and CLIP-Adapter's adapter carry over, Tip-Adapter's cache is empty).
* +SHIP: a `SHIPGenerator` is fitted on the base features (a fixed schedule: the
  paper's 50 epochs, never a test-picked epoch), synthesizes K·views features per new
  class, and the same baseline trains one base+new model on the union.
* `--synthesis per_batch`: the +SHIP rows draw fresh synthesized features for every
  training batch instead (as many as the batch's real ones, random new classes: the
  official code's draw), so they take the plain baseline's step count.
* Base accuracy is scored within the base classes, new within the new ones; H is
  their harmonic mean. Tip-Adapter's α, β are picked on the base validation shots.
  No test label is read before the final scores.

Every method sees the same cached features of the same draw. Training schedules are
the models' defaults (their `<Method>TrainingArguments`: CoOp's epochs by shot count with its
1-epoch constant warm-up, for CoOp and CLIP-Adapter); --coop-epochs E trains CoOp for E
epochs instead (a reduced protocol, for CPU time; said in RESULTS.md). Wall-clock times are
reported as ratios to the bare CLIP forward over the test images, measured in the
same run. Writes `results.json` (raw) next to this script; `plot.py` draws the figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.clip import get_templates
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import base_new_class_split, sample_few_shot, select_classes
from hf_clipadapt.metrics import accuracy, harmonic_mean
from hf_clipadapt.ship import PerBatchSynthesis, SHIPGenerator
from hf_clipadapt.testbed import load_suite, load_testbed_clip
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

HERE = Path(__file__).resolve().parent
METHODS = {
    "CoOp": (CoOpForImageClassification, {}),
    "CLIP-Adapter": (CLIPAdapterForImageClassification, {}),
    "Tip-Adapter-F": (TipAdapterForImageClassification, {"train_keys": True}),
}


def suite_splits(name: str):
    """(train pool, test_base, test_new, base names, new names) of a suite."""
    suite = load_suite(name, seed=0)
    if name == "base_to_new":
        train, test_base, test_new = suite["train"], suite["test_base"], suite["test_new"]
        return train, test_base, test_new, train.features["label"].names, test_new.features["label"].names
    base, new = base_new_class_split(suite["train"].features["label"].names)
    return (
        select_classes(suite["train"], base),
        select_classes(suite["test"], base),
        select_classes(suite["test"], new),
        base,
        new,
    )


def encode_all(clip, train_pool, test_base, test_new, base, new, *, shots, seed, views):
    """Cached features of one draw: train views, validation, both test halves."""
    split = sample_few_shot(train_pool, shots=shots, seed=seed)
    encoder = TipAdapterForImageClassification.from_clip(
        clip, base, get_templates("testbed"), view_flip=False, views=views
    )
    train = encoder.encode_training_views(split["train"], seed=seed, views=views)
    val = encoder.encode_dataset(split["validation"], split="validation")
    start = time.perf_counter()
    tb = encoder.encode_dataset(test_base, split="test")
    forward_s = time.perf_counter() - start
    tn = encoder.encode_dataset(test_new, split="test")
    return dict(train=train, val=val, test_base=tb, test_new=tn, forward_s=forward_s)


def score(model, feats, labels, columns=None) -> float:
    logits = model.predict_features(feats)
    return accuracy(logits if columns is None else logits[:, columns], labels)


def build(cls, kw, clip, names, args):
    if cls is CoOpForImageClassification and args.coop_epochs is not None:
        kw = {**kw, "epochs": args.coop_epochs}
    return cls.from_clip(
        clip, names, get_templates("testbed"), view_flip=False, views=args.views, shots=args.shots, **kw
    )


def fit(model, feats, labels, val, extra, args, seed, lr=None):
    overrides = {}
    if lr is not None:
        overrides["learning_rate"] = lr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # label-only classes of the plain baselines warn by design
        start = time.perf_counter()
        model.fit_features(
            feats, labels, views=args.views, validation=val, extra_features=extra, seed=seed, args=overrides
        )
    return time.perf_counter() - start


def choose_lr(cls, kw, clip, data, base, args, seed):
    """The learning rate of --lr-grid whose plain model scores best on the base
    validation shots (never test data); returns (lr, the fitted model, scores, seconds)."""
    (x, y), val = data["train"], data["val"]
    best, scores = None, {}
    for lr in args.lr_grid:
        model = build(cls, kw, clip, base, args)
        seconds = fit(model, x, y, val, None, args, seed, lr)
        scores[lr] = score(model, *val)
        if best is None or scores[lr] > scores[best[0]]:
            best = (lr, model, seconds)
    return best[0], best[1], scores, best[2]


def run_method(name, clip, data, base, new, synth, args, seed) -> dict:
    cls, kw = METHODS[name]
    (x, y), val = data["train"], data["val"]
    out = {}
    if args.lr_grid:
        lr, plain, val_scores, t_plain = choose_lr(cls, kw, clip, data, base, args, seed)
    else:
        lr, val_scores = None, None
        plain = build(cls, kw, clip, base, args)
        t_plain = fit(plain, x, y, val, None, args, seed)
    out[name] = dict(
        base=score(plain, *data["test_base"]),
        new=score(plain.for_classes(new), *data["test_new"]),
        train_s=t_plain,
        lr=lr,
        validation_by_lr=val_scores,
    )
    both = build(cls, kw, clip, base + new, args)
    if args.synthesis == "per_batch":  # `synth` is the generator: fresh features for every batch
        extra = PerBatchSynthesis(both, synth, new)
    else:
        extra = (synth[0], synth[1] + len(base))
    t_ship = fit(both, x, y, val, extra, args, seed, lr)
    cols_b, cols_n = list(range(len(base))), list(range(len(base), len(base) + len(new)))
    out[name + "+SHIP"] = dict(
        base=score(both, *data["test_base"], cols_b), new=score(both, *data["test_new"], cols_n), train_s=t_ship, lr=lr
    )
    return out


def run_seed(clip, suite, args, seed) -> dict:
    train_pool, test_base, test_new, base, new = suite
    data = encode_all(clip, train_pool, test_base, test_new, base, new, shots=args.shots, seed=seed, views=args.views)
    zs = TipAdapterForImageClassification.from_clip(clip, base + new, get_templates("testbed"))
    nb = len(base)
    rows = {
        "zero-shot": dict(
            base=score(zs, *data["test_base"], list(range(nb))),
            new=score(zs, *data["test_new"], list(range(nb, nb + len(new)))),
            train_s=0.0,
        )
    }
    generator = SHIPGenerator.from_clip(clip, base, view_flip=False, views=args.views, shots=args.shots)
    start = time.perf_counter()
    generator.fit_features(*data["train"], views=args.views, seed=seed)
    gen_s = time.perf_counter() - start
    synth = generator if args.synthesis == "per_batch" else generator.generate(new, args.shots * args.views, seed=seed)
    for name in args.methods:
        rows.update(run_method(name, clip, data, base, new, synth, args, seed))
    for row in rows.values():
        row["H"] = harmonic_mean(row["base"], row["new"])
    return dict(rows=rows, generator_s=gen_s, clip_forward_s=data["forward_s"], n_test_base=len(test_base))


def summarize(per_seed: list[dict]) -> dict:
    names = per_seed[0]["rows"].keys()
    summary = {}
    for name in names:
        summary[name] = {
            k: (
                float(np.mean([s["rows"][name][k] for s in per_seed])),
                float(np.std([s["rows"][name][k] for s in per_seed])),
            )
            for k in ("base", "new", "H", "train_s")
        }
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--coop-epochs", type=int, default=None, help="CoOp's epochs (default: its rule by shot count)")
    p.add_argument("--suites", nargs="+", default=["base_to_new", "few_shot"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument(
        "--lr-grid",
        type=float,
        nargs="*",
        default=[],
        help="learning rates to choose from on the base validation shots (default: each paper's own)",
    )
    p.add_argument(
        "--synthesis",
        choices=["fixed", "per_batch"],
        default="fixed",
        help="+SHIP rows: one fixed synthesized set (shots × views per new class), or fresh features for "
        "every batch as the official code (CoOp, CLIP-Adapter)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clip = load_testbed_clip()
    results = dict(settings=vars(args), machine=platform.processor() or platform.machine(), suites={})
    for suite_name in args.suites:
        suite = suite_splits(suite_name)
        per_seed = []
        for seed in args.seeds:
            start = time.perf_counter()
            per_seed.append(run_seed(clip, suite, args, seed))
            print(f"{suite_name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            results["suites"][suite_name] = dict(
                per_seed=per_seed, summary=summarize(per_seed), base=list(suite[3]), new=list(suite[4])
            )
            Path(args.out).write_text(json.dumps(results, indent=1))
        for name, row in results["suites"][suite_name]["summary"].items():
            print(
                f"  {name:22s} base {row['base'][0]:5.1f}±{row['base'][1]:.1f}  new {row['new'][0]:5.1f}±{row['new'][1]:.1f}"
                f"  H {row['H'][0]:5.1f}±{row['H'][1]:.1f}"
            )


if __name__ == "__main__":
    main()
