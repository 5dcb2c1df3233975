"""Run a script in `world` CPU processes (gloo) for the FSDP2 tests, robustly.

The processes meet through a file store in a fresh temporary folder, so no TCP port is
chosen at all (parallel test runs cannot collide on one), and the whole run is killed
after `timeout` seconds with every rank's output in the error."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def launch(script: Path, args: list[str], world: int = 2, timeout: float = 240.0) -> list[str]:
    """Run `script args` as ranks 0..world-1; return each rank's output."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "WORLD_SIZE": str(world),
            "OMP_NUM_THREADS": "1",
            "LORAPRO_STORE": f"file://{tmp}/store",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        }
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), *args],
                env={**env, "RANK": str(r)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for r in range(world)
        ]
        deadline, outputs = time.monotonic() + timeout, []
        try:
            for p in procs:
                outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{script.name} did not finish within {timeout:.0f} s") from None
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0]
    if failed:
        logs = "\n".join(f"--- rank {r} ---\n{out[-4000:]}" for r, out in enumerate(outputs))
        raise RuntimeError(f"{script.name} failed on ranks {failed}:\n{logs}")
    return outputs
