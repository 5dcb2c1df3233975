"""examples/coop.py and examples/ship_base_to_new.py fully offline on the testbed CLIP,
with tiny budgets: they run end to end, report what they say, and save loadable models."""

import json

import yaml


def test_coop_example(small_suites, load_example, tmp_path):
    from hf_clipadapt.coop import CoOpForImageClassification

    small_suites(4, 5)
    out = tmp_path / "coop"
    results = load_example("coop").main(
        [
            "--model",
            "testbed",
            "--dataset",
            "testbed:few_shot",
            "--shots",
            "1",
            "--views",
            "1",
            "--no_flip",
            "--epochs",
            "2",
            "--cache_dir",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    assert results["world_size"] == 1 and results["n_ctx"] == 4 and 0 <= results["coop_accuracy"] <= 100
    assert json.loads((out / "results.json").read_text())["coop_accuracy"] == results["coop_accuracy"]
    model = CoOpForImageClassification.from_pretrained(out)
    assert model.config.shots == 1 and model.config.is_fitted
    assert (out / "model.safetensors").stat().st_size < 10_000  # the context only


def test_ship_base_to_new_example(small_suites, load_example, tmp_path):
    from hf_clipadapt.ship import SHIPGenerator
    from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

    small_suites(4, 5)
    out = tmp_path / "ship"
    results = load_example("ship_base_to_new").main(
        [
            "--model",
            "testbed",
            "--dataset",
            "testbed:base_to_new",
            "--shots",
            "1",
            "--views",
            "1",
            "--no_flip",
            "--method",
            "tip_adapter_f",
            "--epochs",
            "1",
            "--generator_epochs",
            "1",
            "--cache_dir",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    assert results["base_classes"] == 32 and results["new_classes"] == 32
    for row in ("zero_shot", "tip_adapter_f", "tip_adapter_f+ship"):
        r = results[row]
        assert 0 <= r["base"] <= 100 and 0 <= r["new"] <= 100
        assert abs(r["H"] - 2 * r["base"] * r["new"] / max(r["base"] + r["new"], 1e-9)) < 1e-6
    model = TipAdapterForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 64 and len(model.config.synthesized_classes) == 32
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["model-index"][0]["results"], "base, new and H reach the card"
    generator = SHIPGenerator.from_pretrained(out / "generator")
    assert generator.config.num_labels == 32 and generator.config.is_fitted


def test_ship_base_to_new_example_with_per_batch_synthesis(small_suites, load_example, tmp_path):
    from hf_clipadapt.coop import CoOpForImageClassification

    small_suites(4, 5)
    out = tmp_path / "ship_per_batch"
    args = "--model testbed --dataset testbed:base_to_new --shots 1 --views 1 --no_flip --method coop --epochs 1"
    args += f" --generator_epochs 1 --cache_dir none --synthesis per_batch --output_dir {out}"
    results = load_example("ship_base_to_new").main(args.split())
    assert set(results) >= {"zero_shot", "coop", "coop+ship"}
    model = CoOpForImageClassification.from_pretrained(out)
    # drawn afresh for every batch: no fixed number per class, and the card says so
    assert len(model.config.synthesized_classes) == 32 and model.config.synthesized_per_class is None
    assert results["synthesis"] == "per_batch"
    assert "every training batch got as many features as it had real ones" in (out / "README.md").read_text()
