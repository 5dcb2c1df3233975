"""Control for the `base_to_new` CoOp rows: is CoOp + SHIP's gain the synthesized features, or
the extra optimisation steps they bring? With SHIP's features of the 32 new classes (64 per
class) beside the 2,048 cached base views, each pass over the training set has twice the
batches, so CoOp + SHIP takes twice CoOp's optimizer steps at the same 200 epochs. This trains
CoOp alone on the base classes for 400 epochs (the same step count as CoOp + SHIP, the same
draw and features as `base_to_new.py`) and scores base and new as there.

    python benchmarks/ship/step_control.py --seeds 1 2 3 --out benchmarks/ship/step_control.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from base_to_new import build, encode_all, fit, score, suite_splits

from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.metrics import harmonic_mean
from hf_clipadapt.testbed import load_testbed_clip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epochs", type=int, default=400, help="CoOp's epochs (default 2 × its 200 at 16 shots)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    clip = load_testbed_clip()
    train_pool, test_base, test_new, base, new = suite_splits("base_to_new")
    build_args = argparse.Namespace(coop_epochs=args.epochs, views=args.views, shots=args.shots)
    rows = {}
    for seed in args.seeds:
        data = encode_all(
            clip, train_pool, test_base, test_new, base, new, shots=args.shots, seed=seed, views=args.views
        )
        model = build(CoOpForImageClassification, {}, clip, base, build_args)
        start = time.perf_counter()
        fit(model, *data["train"], data["val"], None, build_args, seed)
        b, n = score(model, *data["test_base"]), score(model.for_classes(new), *data["test_new"])
        steps = max((e.get("step", 0) for e in model.history_), default=None)  # Trainer log history
        rows[seed] = dict(base=b, new=n, H=harmonic_mean(b, n), train_s=time.perf_counter() - start, steps=steps)
        print(f"seed {seed}: {rows[seed]}", flush=True)
        Path(args.out).write_text(json.dumps(dict(settings=vars(args), per_seed=rows), indent=1))


if __name__ == "__main__":
    main()
