"""How close does each float comparison of the test suite come to its tolerance?

A pytest plugin for tolerance audits (docs/tolerance_audit.md). It wraps
`torch.testing.assert_close` (and so `assert_close_scaled`) and
`numpy.testing.assert_allclose`, and appends one JSON line per call to $MARGIN_OUT:
the test, the calling line, max |error| / allowed error ("ratio"), the largest
|expected| and the tolerances. The margin is 1/ratio: how many times larger the
error may grow (on another CPU, thread count or kernel) before the test fails.

    PYTHONPATH=.ci:. MARGIN_OUT=/tmp/margins.jsonl python -m pytest -p margin_plugin -m numeric tests
    python .ci/margin_plugin.py /tmp/margins.jsonl 50     # comparisons with a margin under 50x

Comparisons bound at import (`from torch.testing import assert_close`) are not seen.
"""

from __future__ import annotations

import inspect
import json
import os
import sys

import numpy as np
import torch

_OUT = os.environ.get("MARGIN_OUT", "margins.jsonl")
_TORCH_ASSERT_CLOSE = torch.testing.assert_close
_NUMPY_ASSERT_ALLCLOSE = np.testing.assert_allclose
# torch.testing.assert_close's defaults by dtype (rtol, atol)
_DEFAULTS = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5)}


def _caller() -> str:
    for frame in inspect.stack()[3:10]:
        if f"{os.sep}tests{os.sep}" in frame.filename:
            return f"{frame.filename.split(os.sep + 'tests' + os.sep)[1]}:{frame.lineno}"
    return "?"


def _record(actual, expected, rtol, atol) -> None:
    def tensor(x):
        return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    try:
        a, e = tensor(actual), tensor(expected)
    except Exception:  # noqa: BLE001 - mappings, sequences of tensors: not audited
        return
    if not (a.is_floating_point() or e.is_floating_point()) or a.numel() == 0:
        return
    dtype = a.dtype if a.is_floating_point() else e.dtype
    if rtol is None:
        rtol, atol = _DEFAULTS.get(dtype, (1e-7, 1e-7))
    a, e = a.double(), e.double().expand_as(a.double())
    allowed = (atol + rtol * e.abs()).clamp_min(1e-300)
    entry = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
        "at": _caller(),
        "dtype": str(dtype).replace("torch.", ""),
        "ratio": float(((a - e).abs() / allowed).max()),
        "max_expected": float(e.abs().max()),
        "max_err": float((a - e).abs().max()),
        "rtol": rtol,
        "atol": atol,
    }
    with open(_OUT, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _assert_close(actual, expected, *args, rtol=None, atol=None, **kwargs):
    try:
        _record(actual, expected, rtol, atol)
    except Exception:  # noqa: BLE001 - the audit must never change a test's outcome
        pass
    return _TORCH_ASSERT_CLOSE(actual, expected, *args, rtol=rtol, atol=atol, **kwargs)


def _assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
    try:
        _record(actual, desired, rtol, atol)
    except Exception:  # noqa: BLE001
        pass
    return _NUMPY_ASSERT_ALLCLOSE(actual, desired, rtol, atol, *args, **kwargs)


def pytest_configure(config):
    torch.testing.assert_close = _assert_close
    np.testing.assert_allclose = _assert_allclose


def report(path: str, below: float = 50.0) -> None:
    """Print, per calling line, the smallest margin seen, for margins under `below`."""
    worst: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["at"] not in worst or row["ratio"] > worst[row["at"]]["ratio"]:
                worst[row["at"]] = row
    for row in sorted(worst.values(), key=lambda r: -r["ratio"]):
        margin = 1.0 / max(row["ratio"], 1e-300)
        if margin < below:
            print(
                f"{margin:8.1f}x  {row['at']:45s} {row['dtype']:8s} max|expected|={row['max_expected']:.3g} max|err|={row['max_err']:.2g}"
            )


if __name__ == "__main__":
    report(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 50.0)
