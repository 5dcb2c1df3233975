"""Post-hoc diagnostic (reads test labels, so it informs the report, never a choice):
how often the decoder's pseudo-attribute Dec(x) of a real unseen test feature is
closest to its own class's attribute vector, among all classes and among unseen ones.
The conditional D2 is only as good as these pseudo-attributes.

    nice -n 10 python benchmarks/tzsl/diagnose_pseudo_attributes.py --seed 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_clipadapt.tzsl import TZSLModel, load_features_file

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("bench", HERE / "run_tzsl_benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data, _ = bench.compact(load_features_file(bench.DEFAULT_FEATURES), 256)
    torch.manual_seed(args.seed)  # as the benchmark does: the initial weights depend on it
    model = TZSLModel.from_data(data, "fast")
    model.fit(data, seed=args.seed, progress=False)
    out = {}
    with torch.no_grad():
        for part in ("test_seen", "test_unseen"):
            x, y = getattr(data, f"{part}_features"), getattr(data, f"{part}_labels")
            pseudo = model(x).pseudo_attributes
            sims = F.normalize(pseudo, dim=-1) @ F.normalize(model.class_attributes, dim=-1).T
            out[f"{part}_nearest_is_own_class"] = 100 * (sims.argmax(-1) == y).float().mean().item()
            out[f"{part}_nearest_is_a_seen_class"] = (
                100 * torch.isin(sims.argmax(-1), torch.tensor(data.seen_classes)).float().mean().item()
            )
            u = torch.tensor(data.unseen_classes)
            out[f"{part}_nearest_unseen_is_own_class"] = 100 * (u[sims[:, u].argmax(-1)] == y).float().mean().item()
    out["evaluate"] = model.evaluate(data)
    print(json.dumps(out, indent=1))
    (HERE / f"diagnostic_seed{args.seed}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
