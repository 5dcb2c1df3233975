"""examples/trainer_open_set_metrics.py: the `evaluate` modules inside Trainer's compute_metrics."""

import json
import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trainer_open_set_metrics.py"


def test_compute_metrics_example_reports_open_set_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    main = runpy.run_path(str(EXAMPLE))["main"]
    results = main(["--output_dir", str(tmp_path / "out"), "--epochs", "2"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == results
    for key in ("eval_known", "eval_auroc", "eval_H", "eval_per_class_accuracy"):
        assert 0.0 <= results[key] <= 100.0
    k, a = results["eval_known"], results["eval_auroc"]
    assert results["eval_H"] == pytest.approx(2 * k * a / (k + a), rel=1e-9)
    assert results["eval_known"] == results["eval_per_class_accuracy"], "both are the known classes' mean recall"
    assert results["eval_known"] > 100 / 5 + 20, "the probe learns the known classes well above chance (20%)"
