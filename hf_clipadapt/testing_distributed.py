"""`run_distributed` (re-exported by `hf_clipadapt.testing_utils`): a test helper that runs a
function in several CPU processes from a fresh interpreter. Kept in its own module so
`testing_utils` stays within the size limit.
"""

from __future__ import annotations

_LAUNCH = """
import json, runpy, sys
from accelerate import debug_launcher

path, name, args_file, num_processes = sys.argv[1:5]
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))
function = runpy.run_path(path)[name]
with open(args_file, encoding="utf-8") as f:
    args = tuple(json.load(f))
debug_launcher(function, args=args, num_processes=int(num_processes))
"""


def run_distributed(function, args=(), num_processes: int = 2, timeout: float = 300):
    """Run `function(*args)` in `num_processes` CPU processes (gloo) through
    `accelerate.debug_launcher`, from a fresh Python interpreter.

    debug_launcher forks the calling process. Inside a long test session that parent
    has already run BLAS/OpenMP work, whose thread pools do not survive a fork: a
    child that then calls, say, `torch.linalg.cholesky` waits forever. The parent
    may also hold Accelerate's state singletons, which would make each child think
    it is a lone process. So the launch happens in a new interpreter that only loads
    the module defining `function` (a module-level function) and forks from there.
    `args` travel as JSON (strings, numbers, lists: nothing is unpickled); failures
    raise with the workers' output.
    """
    import inspect
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if function.__qualname__ != function.__name__:
        raise ValueError(f"run_distributed needs a module-level function, got {function.__qualname__}")
    with tempfile.TemporaryDirectory() as tmp:
        args_file = Path(tmp) / "args.json"
        try:
            args_file.write_text(json.dumps(list(args)), encoding="utf-8")
        except TypeError as e:
            raise TypeError(f"run_distributed passes args as JSON: give strings/numbers/lists ({e})") from e
        cmd = [
            sys.executable,
            "-c",
            _LAUNCH,
            inspect.getfile(function),
            function.__name__,
            str(args_file),
            str(num_processes),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"distributed run of {function.__name__} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
