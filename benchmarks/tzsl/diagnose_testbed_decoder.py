"""Post-hoc diagnostic on the testbed zsl suite (reads test labels; informs the report, selects nothing).

When the decoder's pseudo-attribute Dec(x) of a test-unseen image is nearest to a *seen*
class, does that seen class share the image's colour, its object, or neither?

    nice -n 15 python benchmarks/tzsl/diagnose_testbed_decoder.py --seed 0 --variant attributes

Retrains one run of `testbed_zsl.py` (same data, preset and seed) and writes
`diagnostic_testbed_<variant>_<method>_seed<seed>.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_clipadapt.testbed import KNOWN_OBJECTS, zsl_classes
from hf_clipadapt.tzsl import TZSLModel

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="attributes", choices=["attributes", "text"])
    p.add_argument("--method", default="tzsl-full", choices=["tzsl-inductive", "tzsl-uncond-D2", "tzsl-full"])
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("testbed_zsl", HERE / "testbed_zsl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = bench.build_data(args.variant)
    torch.manual_seed(args.seed)  # as the benchmark does: the initial weights depend on it
    model = TZSLModel.from_data(data, "fast", **bench.TZSL_METHODS[args.method])
    model.fit(data, seed=args.seed, progress=False)
    model.eval()
    classes = zsl_classes(KNOWN_OBJECTS)
    with torch.no_grad():
        pseudo = model(data.test_unseen_features).pseudo_attributes
    nearest = (F.normalize(pseudo, dim=-1) @ F.normalize(model.class_attributes, dim=-1).T).argmax(-1).tolist()
    truth = data.test_unseen_labels.tolist()
    seen = set(data.seen_classes)
    counts = {
        "own class": 0,
        "seen, same colour": 0,
        "seen, same object": 0,
        "seen, shares nothing": 0,
        "other unseen": 0,
    }
    for n, y in zip(nearest, truth):
        if n == y:
            counts["own class"] += 1
        elif n not in seen:
            counts["other unseen"] += 1
        elif classes[n][0] == classes[y][0]:
            counts["seen, same colour"] += 1
        elif classes[n][1] == classes[y][1]:
            counts["seen, same object"] += 1
        else:
            counts["seen, shares nothing"] += 1
    out = {
        "run": vars(args),
        "nearest_class_of_unseen_pseudo_attributes_percent": {k: 100 * v / len(truth) for k, v in counts.items()},
        "evaluate": model.evaluate(data),
    }
    print(json.dumps(out, indent=1))
    (HERE / f"diagnostic_testbed_{args.variant}_{args.method}_seed{args.seed}.json").write_text(
        json.dumps(out, indent=1)
    )


if __name__ == "__main__":
    main()
