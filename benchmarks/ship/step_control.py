"""Control for the `base_to_new` CoOp rows: is CoOp + SHIP's gain the synthesized features, or
the extra optimisation steps they bring? With SHIP's features of the 32 new classes (64 per
class) beside the 2,048 cached base views, each pass over the training set has twice the
batches, so CoOp + SHIP takes twice CoOp's optimizer steps at the same 200 epochs. This trains
CoOp alone on the base classes for 400 epochs (the same step count as CoOp + SHIP, the same
draw and features as `base_to_new.py`) and scores base and new as there.

    python benchmarks/ship/step_control.py --seeds 1 2 3 --out benchmarks/ship/step_control.json

`--extra text` is the second control: CoOp trained over base + new classes, as CoOp + SHIP is,
with the same number of extra features per new class (shots × views), but copies of each new
class's zero-shot text embedding in place of SHIP's synthesized image features, at the default
200 epochs (the same step count as CoOp + SHIP). If base accuracy rises as much, the gain comes
from the joint training over the new classes, not from what SHIP's generator produces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from base_to_new import build, encode_all, fit, score, suite_splits

from hf_clipadapt.clip import get_templates
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.metrics import harmonic_mean
from hf_clipadapt.testbed import load_testbed_clip
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification


def text_control(clip, data, base, new, build_args, seed) -> dict:
    """CoOp over base + new with copies of the new classes' text embeddings as extra features."""
    zs = TipAdapterForImageClassification.from_clip(clip, base + new, get_templates("testbed"))
    per_class = build_args.shots * build_args.views
    extra_x = zs.text_weights[len(base) :].repeat_interleave(per_class, dim=0)
    extra_y = torch.arange(len(base), len(base) + len(new)).repeat_interleave(per_class)
    model = build(CoOpForImageClassification, {}, clip, base + new, build_args)
    fit(model, *data["train"], data["val"], (extra_x, extra_y), build_args, seed)
    nb = len(base)
    b = score(model, *data["test_base"], list(range(nb)))
    n = score(model, *data["test_new"], list(range(nb, nb + len(new))))
    return dict(base=b, new=n, H=harmonic_mean(b, n), steps=last_step(model))


def alone_control(clip, data, base, new, build_args, seed) -> dict:
    """CoOp alone on the base classes (at CoOp + SHIP's step count by default), scored as in base_to_new.py."""
    model = build(CoOpForImageClassification, {}, clip, base, build_args)
    fit(model, *data["train"], data["val"], None, build_args, seed)
    b, n = score(model, *data["test_base"]), score(model.for_classes(new), *data["test_new"])
    return dict(base=b, new=n, H=harmonic_mean(b, n), steps=last_step(model))


def last_step(model) -> int | None:
    """The last optimizer step in the model's Trainer log history."""
    return max((e.get("step", 0) for e in model.history_), default=None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--epochs", type=int, default=None, help="CoOp's epochs (default: 400 alone, 200 with --extra text)"
    )
    p.add_argument("--extra", choices=["none", "text"], default="none", help="see above")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    clip = load_testbed_clip()
    train_pool, test_base, test_new, base, new = suite_splits("base_to_new")
    epochs = args.epochs or (200 if args.extra == "text" else 400)
    build_args = argparse.Namespace(coop_epochs=epochs, views=args.views, shots=args.shots)
    rows = {}
    for seed in args.seeds:
        data = encode_all(
            clip, train_pool, test_base, test_new, base, new, shots=args.shots, seed=seed, views=args.views
        )
        control = text_control if args.extra == "text" else alone_control
        start = time.perf_counter()
        rows[seed] = {**control(clip, data, base, new, build_args, seed), "train_s": time.perf_counter() - start}
        print(f"seed {seed}: {rows[seed]}", flush=True)
        Path(args.out).write_text(json.dumps(dict(settings=vars(args), per_seed=rows), indent=1))


if __name__ == "__main__":
    main()
