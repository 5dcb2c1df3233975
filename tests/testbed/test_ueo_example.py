"""examples/ueo_unsupervised.py fully offline on the testbed CLIP's open-set suite, shrunk."""

import json


def test_ueo_example_on_the_open_set_suite(small_suites, load_example, tmp_path, capsys):
    from hf_clipadapt.ueo import UEOForImageClassification

    small_suites(2, 4)
    out = tmp_path / "ueo"
    results = load_example("ueo_unsupervised").main(
        [
            "--model",
            "testbed",
            "--dataset",
            "testbed:open_set",
            "--setting",
            "open_partial",
            "--epochs",
            "1",
            "--train_batch_size",
            "16",
            "--learning_rate",
            "1e-3",
            "--no_flip",
            "--cache_dir",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    assert "world size: 1" in capsys.readouterr().out and results["world_size"] == 1
    assert results["known_classes"] == 16 and results["objective"] == "ueo"
    # open_partial: 12 of 16 known classes x 2 images + 2 of 4 unknown classes x 2 of their 4 test images
    assert results["train_images"] == 12 * 2 + 2 * 2
    assert results["test_images"] == 16 * 4 + 4 * 2  # every known test image + the held-out unknown half
    for row in ("zero_shot", "ueo"):
        assert 0 <= results[row]["per_class_accuracy"] <= 100 and 0 <= results[row]["auroc"] <= 100
    assert json.loads((out / "results.json").read_text())["ueo"] == results["ueo"]
    model = UEOForImageClassification.from_pretrained(out)
    assert model.config.is_fitted and model.config.dataset_name == "testbed-open_set-open_partial"
    assert "auroc" in (out / "README.md").read_text()


def test_ueo_example_oracle_ablation(small_suites, load_example, tmp_path):
    small_suites(2, 4)
    results = load_example("ueo_unsupervised").main(
        [
            "--model",
            "testbed",
            "--dataset",
            "testbed:open_set",
            "--setting",
            "open",
            "--epochs",
            "1",
            "--oracle",
            "--train_batch_size",
            "32",
            "--cache_dir",
            "none",
            "--output_dir",
            str(tmp_path / "oracle"),
        ]
    )
    assert results["objective"] == "oracle" and results["train_images"] == 16 * 2 + 2 * 2
