"""examples/craft_black_box.py offline on the testbed CLIP, locally and through a loopback server,
with a tiny budget: it runs, spends what it says, and saves a loadable few-kilobyte model."""

import json

from hf_clipadapt.craft import BlackBoxServer, CraFTForImageClassification, LocalBlackBox


def test_craft_example_local_and_served(small_suites, load_example, tmp_path):
    small_suites(3, 3)
    example = load_example("craft_black_box")
    common = [
        "--model",
        "testbed",
        "--dataset",
        "testbed:few_shot",
        "--shots",
        "2",
        "--budget",
        "25",
        "--population",
        "10",
        "--intrinsic_dim",
        "32",
        "--cache_dir",
        "none",
    ]
    results = example.main([*common, "--output_dir", str(tmp_path / "local")])
    assert (
        results["world_size"] == 1 and results["generations"] == 2 and results["training_queries"] == 22
    )  # 2 × (10 + 1 for R)
    assert 0 <= results["zero_shot_accuracy"] <= 100 and 0 <= results["craft_accuracy"] <= 100
    saved = json.loads((tmp_path / "local" / "results.json").read_text())
    assert saved["craft_accuracy"] == results["craft_accuracy"]
    model = CraFTForImageClassification.from_pretrained(tmp_path / "local")
    assert model.config.is_fitted and model.config.shots == 2 and model.config.black_box == "testbed"
    floats = 32 + (16 * 256 + 256) + (256 * 16 + 16)  # z, then R = 16→256→16: nothing else is saved
    assert (tmp_path / "local" / "model.safetensors").stat().st_size < 4 * floats + 1_000
    assert "CraFT" in (tmp_path / "local" / "README.md").read_text()

    with BlackBoxServer(LocalBlackBox("testbed"), token="tok") as server:
        served = example.main([*common, "--url", server.url, "--token", "tok", "--output_dir", str(tmp_path / "url")])
    # the same seed, shots and budget through HTTP give the same model, hence the same accuracy
    assert served["craft_accuracy"] == results["craft_accuracy"] and served["training_queries"] == 22
