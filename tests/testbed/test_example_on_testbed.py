"""examples/gda_few_shot.py fully offline on the testbed: --model testbed --dataset testbed:<suite>.

The suite is rendered from the synthetic-sprite world (no dataset files); the model
is the real committed testbed checkpoint."""

import importlib.util
import json
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gda_few_shot.py"


def test_gda_example_on_the_testbed(world, monkeypatch, tmp_path):
    import hf_clipadapt.testbed.suites as suites
    from hf_clipadapt.testbed import TESTBED_TEMPLATES, load_testbed_clip

    monkeypatch.setattr(suites, "_offline_test_world", lambda: world)
    spec = importlib.util.spec_from_file_location("gda_few_shot", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "out"
    results = example.main(
        [
            "--model",
            "testbed",
            "--dataset",
            "testbed:few_shot",
            "--shots",
            "2",
            "--views",
            "1",
            "--no_flip",
            "--cache_dir",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    assert results["test_images"] == 16 * 50 and 0 <= results["gda_accuracy"] <= 100
    config = json.loads((out / "config.json").read_text())
    assert config["templates"] == TESTBED_TEMPLATES  # get_templates("testbed-few_shot")
    assert config["view_flip"] is False and len(config["id2label"]) == 16
    assert config["logit_scale"] == load_testbed_clip().logit_scale  # the testbed's own temperature
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["datasets"] == ["testbed-few_shot"] and "base_model" not in header
