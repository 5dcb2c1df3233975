import importlib.util
import json
from pathlib import Path

from hf_clipadapt.tzsl import save_features_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tzsl_train.py"


def test_example_trains_saves_model_card_and_results(tiny_data, tmp_path):
    spec = importlib.util.spec_from_file_location("tzsl_train", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    save_features_file(tiny_data, tmp_path / "feats.safetensors")
    out = tmp_path / "run"
    example.main(
        [
            "--features",
            str(tmp_path / "feats.safetensors"),
            "--epochs",
            "1",
            "--steps_per_epoch",
            "3",
            "--hidden_dim",
            "32",
            "--select_epochs",
            "1,2",
            "--output_dir",
            str(out),
            "--threads",
            "1",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["scores"]) == {"zsl_accuracy", "unseen_accuracy", "seen_accuracy", "h_score"}
    # Selection saw only seen classes: its pseudo-unseen classes are seen ones.
    assert set(results["selection"]["pseudo_unseen_classes"]) <= set(tiny_data.seen_classes)
    assert results["training"]["num_train_epochs"] == results["selection"]["chosen_epochs"]
    card = (out / "README.md").read_text()
    assert "h_score" in card and "c10" in card and "library_name: hf_clipadapt" in card
    assert (out / "model.safetensors").exists()
    assert any(
        json.loads(line).get("test/zsl_accuracy") is not None
        for line in (out / "logs" / "tzsl.jsonl").read_text().splitlines()
    )
