"""Issue 27 (a newcomer's first minutes and Hub checkpoints): the pieces, on tiny models."""

import json
import sys
from pathlib import Path

import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import save_tiny_clip, tiny_image_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the sfda helpers below


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny"))


def _named(dataset, name):
    dataset.info.dataset_name = name
    return dataset


def test_view_flip_follows_the_dataset_unless_told(backbone):
    from hf_clipadapt.data import dataset_augmentation, register_dataset_augmentation
    from hf_clipadapt.gda import GDAForImageClassification

    register_dataset_augmentation("mirror-free", view_flip=False)
    data = tiny_image_dataset(num_classes=2, per_class=4, class_names=["a", "b"])
    assert dataset_augmentation(_named(data, "mirror-free:train")) == {"view_flip": False}
    model = GDAForImageClassification.from_clip(backbone, ["a", "b"])
    assert model.config.view_flip is None
    assert model.training_views(0, data).flip is False and model.config.views_flipped is False
    other = tiny_image_dataset(num_classes=2, per_class=4, class_names=["a", "b"])
    assert model.training_views(0, other).flip is True  # an unregistered dataset keeps the paper's flips
    forced = GDAForImageClassification.from_clip(backbone, ["a", "b"], view_flip=True)
    assert forced.training_views(0, data).flip is True  # an explicit choice wins


def test_testbed_suites_are_named_and_registered_without_flips():
    from hf_clipadapt.data import dataset_augmentation
    from hf_clipadapt.testbed import load_suite

    suite = load_suite("few_shot", seed=0, n_train_per_class=1, n_test_per_class=1)
    assert suite["train"].info.dataset_name == "testbed:few_shot"
    assert dataset_augmentation(suite["train"].select([0])) == {"view_flip": False}


def test_from_clip_initialises_from_a_seed_and_leaves_the_global_rng_alone(backbone):
    from hf_clipadapt.ship import SHIPGenerator

    torch.manual_seed(123)
    a = SHIPGenerator.from_clip(backbone, ["a", "b"])
    after_a = torch.rand(1)
    torch.manual_seed(456)
    b = SHIPGenerator.from_clip(backbone, ["a", "b"])
    c = SHIPGenerator.from_clip(backbone, ["a", "b"], init_seed=1)
    for name, tensor in a.saved_state_dict().items():
        assert torch.equal(tensor, b.saved_state_dict()[name]), name
    assert not torch.equal(a.to_mu.weight, c.to_mu.weight)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after_a)  # construction consumed nothing from the global RNG


def test_card_names_the_dataset_recorded_by_evaluate(backbone, tmp_path):
    from hf_clipadapt.coop import CoOpForImageClassification

    data = tiny_image_dataset(num_classes=2, per_class=4, class_names=["red", "green"])
    model = CoOpForImageClassification.from_clip(backbone, ["red", "green"])
    model.fit(data, shots=2, views=1, seed=0, args={"num_train_epochs": 1})
    assert model.config.dataset_name is None  # an in-memory dataset has no name
    model.evaluate(data, record_as="my-colours")
    model.save_pretrained(tmp_path / "coop")
    card = (tmp_path / "coop" / "README.md").read_text()
    assert "my-colours" in card.split("## Results")[0] and "not recorded" not in card
    assert "pip install hf_clipadapt" in card


def test_lora_adapter_card_records_the_hub_id_not_a_local_path(tmp_path):
    from hf_clipadapt.hub import write_lora_adapter_card

    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/usr/lib/site-packages/x/model"})
    )
    write_lora_adapter_card(
        tmp_path,
        base_model="org/model",
        task="text-classification",
        dataset="d",
        settings={"lora_r": 8},
        results=[("test", "accuracy", 0.5)],
    )
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/model"
    card = (tmp_path / "README.md").read_text()
    assert "More Information Needed" not in card and "base_model: org/model" in card and "lora_r 8" in card


class _PooledNet(torch.nn.Module):
    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)

    def forward(self, pixel_values):
        return self.proj(pixel_values.mean((2, 3)))


def test_sfda_card_title_labels_and_input(tmp_path):
    from hf_clipadapt.sfda import SFDAForImageClassification

    model = SFDAForImageClassification.from_backbone(_PooledNet(), id2label={0: "zero", 1: "one"}, bottleneck_dim=8)
    assert model.config.label2id == {"zero": 0, "one": 1}
    model.config.dataset_name, model.config.image_size = "offline:mnist:64", 32
    model.config.image_mean, model.config.image_std = [0.5] * 3, [0.5] * 3
    model.save_pretrained(tmp_path / "deep" / "local" / "folder")
    loaded = SFDAForImageClassification.from_pretrained(tmp_path / "deep" / "local" / "folder")
    card = loaded.create_model_card()
    title = [line for line in str(card).splitlines() if line.startswith("# ")][0]
    assert str(tmp_path) not in title and title.startswith("# sfda-"), title
    assert "offline:mnist:64" in str(card) and "32×32 pixels" in str(card)
    assert loaded.config.label2id == {"zero": 0, "one": 1}


def test_trainer_metrics_example_prints_the_world_size(tmp_path, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    example = Path(__file__).resolve().parents[2] / "examples" / "trainer_open_set_metrics.py"
    runpy.run_path(str(example))["main"](["--output_dir", str(tmp_path / "out"), "--epochs", "1"])
    assert "world size: 1 (not_parallel)" in capsys.readouterr().out


def test_sfda_fit_records_the_data_for_the_card():
    from sfda.conftest import pixels, tiny_sfda_model  # tests/sfda, a namespace package on sys.path

    from hf_clipadapt.sfda import fit
    from hf_clipadapt.testing_utils import tiny_image_dataset

    model = tiny_sfda_model()
    source = _named(tiny_image_dataset(num_classes=3, per_class=2, size=16), "digits-source")
    fit(model, source, stage="source", transform=pixels, epochs=1, batch_size=6)
    assert model.config.dataset_name == "digits-source"
    target = _named(tiny_image_dataset(num_classes=3, per_class=2, size=16, seed=1), "digits-target")
    fit(model, target.remove_columns("label"), stage="target", transform=pixels, epochs=1, batch_size=6)
    assert model.config.dataset_name == "digits-target"
    assert "digits-target" in str(model.create_model_card())
