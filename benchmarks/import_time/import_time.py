"""Import time of `import hf_clipadapt` against `import transformers, peft`, in the same run.

Each import runs in a fresh interpreter (nothing cached in-process; the OS file
cache is warm after the first round, as for a user who imports twice). Rounds
alternate the commands so that machine load hits both alike; medians are reported.

    python benchmarks/import_time/import_time.py --rounds 15 [--baseline <older checkout>]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "hf_clipadapt": "import hf_clipadapt",
    "transformers+peft": "import transformers, peft",
    "transformers.PreTrainedModel": "from transformers import PreTrainedModel",
    "hf_clipadapt+GDA model": "import hf_clipadapt; hf_clipadapt.GDAForImageClassification",
}


def timed(code: str, pythonpath: str | None = None) -> float:
    """Seconds the import takes inside a fresh interpreter (interpreter start excluded)."""
    probe = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    # From a neutral folder: `python -c` puts the working directory first on sys.path,
    # which would shadow PYTHONPATH with a checkout found there.
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=tempfile.gettempdir()
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", help="a checkout of an older hf_clipadapt to time too (its folder)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("import_time.json")))
    args = parser.parse_args()
    commands = {name: (code, None) for name, code in COMMANDS.items()}
    if args.baseline:
        commands["hf_clipadapt (baseline checkout)"] = ("import hf_clipadapt", args.baseline)
    samples = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (code, path) in commands.items():
            samples[name].append(timed(code, path))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    ratio = medians["hf_clipadapt"] / medians["transformers+peft"]
    result = {
        "rounds": args.rounds,
        "median_seconds": medians,
        "samples": samples,
        "ratio_hf_clipadapt_to_transformers_peft": ratio,
        "python": sys.version.split()[0],
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, m in medians.items():
        print(f"{name:32s} {m:6.2f} s")
    print(f"hf_clipadapt / (transformers + peft): {ratio:.2f}")


if __name__ == "__main__":
    main()
