"""CraFTForImageClassification: R = 0 is the black box, save/load, what is saved, push, and the shared battery."""

from unittest import mock

import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import CraFTForImageClassification, CraFTTrainingArguments, LocalBlackBox
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    PIL_image,
    assert_initialised,
    save_tiny_clip,
    tiny_clip_model,
    tiny_clip_tokenizer,
    tiny_image_dataset,
    tiny_image_processor,
)

NAMES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def pixels(box, n=4):
    return box.image_processor(images=[PIL_image(seed=s) for s in range(n)], return_tensors="pt")["pixel_values"]


def trained(clip_dir):
    box = LocalBlackBox(str(clip_dir))
    model = CraFTForImageClassification.from_black_box(box, NAMES, intrinsic_dim=16, refine_hidden=8)
    x = pixels(box, 6)
    model.fit_pixels(
        x, torch.tensor([0, 1, 2, 0, 1, 2]), CraFTTrainingArguments(budget=22, population=10, sigma=1.0, batch_size=2)
    )
    return model, box


def test_with_r_zero_the_output_is_the_black_boxs(clip_dir):
    model, box = trained(clip_dir)
    x = pixels(box)
    with torch.no_grad():
        for p in model.refiner.parameters():
            p.zero_()
    expected = box.query(model.prompt.context(), box.upload_images(x), NAMES)
    before = box.queries
    logits = model(pixel_values=x).logits
    assert box.queries == before + 1  # forward is one query
    np.testing.assert_array_equal(logits.detach().numpy(), expected)


def test_fit_spends_the_budget_and_saves_only_z_and_r(clip_dir, tmp_path):
    model, box = trained(clip_dir)
    assert box.queries == 22 and model.config.queries_spent == 22 and model.config.is_fitted
    assert set(model.saved_state_dict()) == {
        "prompt.z",
        "refiner.net.0.weight",
        "refiner.net.0.bias",
        "refiner.net.2.weight",
        "refiner.net.2.bias",
    }
    model.save_pretrained(tmp_path / "saved")
    reloaded = CraFTForImageClassification.from_pretrained(tmp_path / "saved")
    x = pixels(box)
    assert torch.equal(reloaded(pixel_values=x).logits, model(pixel_values=x).logits)
    assert (tmp_path / "saved" / "model.safetensors").stat().st_size < 2_000


def test_reconnecting_to_another_black_box_is_refused(clip_dir, tmp_path):
    model, _ = trained(clip_dir)
    model.save_pretrained(tmp_path / "saved")
    wide = LocalBlackBox(
        CLIPBackbone(
            tiny_clip_model(
                text_config=dict(
                    vocab_size=99,
                    hidden_size=64,
                    intermediate_size=37,
                    num_attention_heads=4,
                    num_hidden_layers=2,
                    max_position_embeddings=77,
                    bos_token_id=0,
                    eos_token_id=1,
                    pad_token_id=1,
                )
            ),
            tiny_clip_tokenizer(),
            tiny_image_processor(),
        )
    )
    with pytest.raises(ValueError, match="text width 64"):
        CraFTForImageClassification.from_pretrained(tmp_path / "saved", black_box=wide)
    model.config.black_box = str(tmp_path / "gone")
    model.save_pretrained(tmp_path / "orphan")
    with pytest.raises(OSError, match="could not load the black box"):
        CraFTForImageClassification.from_pretrained(tmp_path / "orphan")


def test_push_to_hub_uploads_the_few_parameters_then_the_card(clip_dir):
    model, _ = trained(clip_dir)
    uploads = []
    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=mock.Mock(repo_id="me/craft")),
        mock.patch(
            "huggingface_hub.HfApi.create_commit",
            side_effect=lambda *a, **k: uploads.append([op.path_in_repo for op in k["operations"]]),
        ),
        mock.patch("huggingface_hub.HfApi.upload_file", side_effect=lambda **k: uploads.append(k)),
    ):
        model.push_to_hub("me/craft")
    assert {"config.json", "model.safetensors"} <= set(uploads[0])
    assert uploads[-1]["path_in_repo"] == "README.md" and b"CraFT" in uploads[-1]["path_or_fileobj"]


class TestCraFTContract(AdaptedModelTesterMixin):
    """The battery, except what cannot apply to a black-box model: there is no CLIP on the
    user side to be frozen, left out of the checkpoint or re-attached (`is_clip_adapted=False`;
    the width and orphan checks are `test_reconnecting_to_another_black_box_is_refused`)."""

    model_class = CraFTForImageClassification
    is_clip_adapted = False
    max_saved_bytes = 40_000  # z (512 floats) + R (3→256→3): the VLM is never saved

    def make_model(self, tmp_path):
        box = LocalBlackBox(str(save_tiny_clip(tmp_path / "tiny-clip")))
        model = CraFTForImageClassification.from_black_box(box, NAMES)
        with torch.no_grad():  # a prompt and a refiner away from their start, as after training
            model.prompt.z.normal_(generator=torch.Generator().manual_seed(0))
            model.refiner.net[2].weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        model.config.is_fitted = True
        return model

    def make_inputs(self, model):
        return {"pixel_values": pixels(model.black_box)}

    def make_unfitted_model(self, tmp_path):
        box = LocalBlackBox(str(save_tiny_clip(tmp_path / "fresh-clip")))
        return CraFTForImageClassification.from_black_box(box, NAMES)

    def tiny_labelled_data(self):
        return tiny_image_dataset(len(NAMES), 4, class_names=NAMES)

    def fit_model(self, model, seed):
        return model.fit(
            self.tiny_labelled_data(), shots=2, seed=seed, args={"budget": 22, "population": 10, "batch_size": 2}
        )

    def check_initialisation(self, model):
        # z = 0 and R's last layer = 0, so a fresh model is the black box with the prompt ctx_init;
        # R's first layer keeps nn.Linear's own U(±1/√fan_in)
        assert_initialised(model.prompt.z, "prompt.z", mean=0.0, std=0)
        first, last = model.refiner.net[0], model.refiner.net[2]
        assert_initialised(last.weight, "refiner last weight", mean=0.0, std=0)
        assert_initialised(last.bias, "refiner last bias", mean=0.0, std=0)
        assert_initialised(first.weight, "refiner first weight", bound=first.in_features**-0.5)


def test_fit_takes_a_dataset_like_every_model(tmp_path):
    """The shared signature: fit(dataset, shots=, seed=, args=) returns the model."""
    from hf_clipadapt.craft import CraFTForImageClassification, LocalBlackBox
    from hf_clipadapt.testing_utils import save_tiny_clip, tiny_image_dataset

    box = LocalBlackBox(save_tiny_clip(tmp_path / "clip"))
    names = ["red", "green", "blue"]
    model = CraFTForImageClassification.from_black_box(box, names)
    data = tiny_image_dataset(3, 4, class_names=names)  # 2 shots + 2 validation per class
    fitted = model.fit(data, shots=2, seed=3, args={"budget": 22, "population": 10, "batch_size": 2})
    assert fitted is model and len(model.history_) == 2 and model.config.seed == 3
    assert model.config.shots == 2 and model.config.num_train_images == 6
    with pytest.raises(ValueError, match="class names"):
        CraFTForImageClassification.from_black_box(box, ["a", "b", "c"]).fit(
            data, args={"budget": 20, "population": 10}
        )
