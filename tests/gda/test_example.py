"""examples/gda_few_shot.py end to end on an imagefolder and a tiny local CLIP (offline)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gda_few_shot.py"


def write_imagefolder(root: Path, per_class: dict[str, int]):
    rng = np.random.default_rng(0)
    colours = {"cat": (200, 40, 40), "dog": (40, 200, 40), "sea_lion": (40, 40, 200)}
    for split, n in per_class.items():
        for name, colour in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_example_runs_offline_and_writes_results_and_card(saved_backbone, tmp_path):
    write_imagefolder(tmp_path / "pets", {"train": 5, "test": 2})
    spec = importlib.util.spec_from_file_location("gda_few_shot", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "out"
    results = example.main(
        [
            "--model",
            saved_backbone.name_or_path,
            "--dataset",
            str(tmp_path / "pets"),
            "--shots",
            "2",
            "--views",
            "2",
            "--seed",
            "2",
            "--cache_dir",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["shots"] == 2 and saved["test_images"] == 6 and 0 <= saved["gda_accuracy"] <= 100
    assert saved["alpha"] in [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["datasets"] == ["pets"]
    # A local CLIP folder is named in the text, never as Hub metadata (see hub.build_model_card).
    assert "base_model" not in header and saved_backbone.name_or_path in (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "sea_lion"} and config["shots"] == 2
