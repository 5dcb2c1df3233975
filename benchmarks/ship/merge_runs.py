"""Merge several `base_to_new.py` outputs (e.g. one run per method, run side by side on a
shared CPU) into one `results.json`: per suite, the rows of each seed, and a summary per
method over the seeds it finished (their count is recorded as `n_seeds`). An earlier merged
file can be given first, to add rows to it.

    python benchmarks/ship/merge_runs.py run_tip.json run_coop.json ... --out benchmarks/ship/results.json
    python benchmarks/ship/merge_runs.py benchmarks/ship/results.json runs_b2n/*.json --out benchmarks/ship/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def merge(paths: list[str]) -> dict:
    """Merge raw runs, or an earlier merged file plus raw runs (its rows are kept unless a later
    run has the same suite, seed and row)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    settings = [s for r in runs for s in (r["settings"]["runs"] if "runs" in r["settings"] else [r["settings"]])]
    out = dict(settings=dict(runs=settings), machine=runs[0]["machine"], suites={})
    for run in runs:
        merged = "runs" in run["settings"]
        seeds = None if merged else run["settings"]["seeds"]
        for name, suite in run["suites"].items():
            target = out["suites"].setdefault(name, dict(per_seed={}, base=suite["base"], new=suite["new"]))
            for i, row in enumerate(suite["per_seed"]):
                seed = row["seed"] if merged else seeds[i]
                entry = target["per_seed"].setdefault(str(seed), dict(rows={}, seed=seed))
                entry["rows"].update(row["rows"])
                times = row["generator_s"] if merged else {", ".join(run["settings"]["methods"]): row["generator_s"]}
                entry.setdefault("generator_s", {}).update(times)
    for suite in out["suites"].values():
        suite["per_seed"] = [suite["per_seed"][k] for k in sorted(suite["per_seed"], key=int)]
        methods = {m: None for s in suite["per_seed"] for m in s["rows"]}
        suite["summary"] = {}
        for m in methods:
            rows = [s["rows"][m] for s in suite["per_seed"] if m in s["rows"]]
            summary = {
                k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows])))
                for k in ("base", "new", "H", "train_s")
            }
            suite["summary"][m] = {**summary, "n_seeds": len(rows)}
    out["settings"]["shots"] = settings[0]["shots"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    Path(args.out).write_text(json.dumps(merge(args.runs), indent=1))


if __name__ == "__main__":
    main()
