"""Bad input to CraFT that a newcomer gives (issue 27): refused before any query is spent."""

import pytest
import torch

from hf_clipadapt.craft import CraFTForImageClassification, CraFTTrainingArguments, LocalBlackBox
from hf_clipadapt.testing_utils import PIL_image, save_tiny_clip, tiny_image_dataset


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.mark.parametrize(
    "names, error, match", [([], ValueError, "classnames is empty"), ("cat", TypeError, "single string")]
)
def test_class_names_are_checked_before_the_black_box_is_asked(clip_dir, names, error, match):
    # [] used to reach a ZeroDivisionError
    with pytest.raises(error, match=match):
        CraFTForImageClassification.from_black_box(LocalBlackBox(str(clip_dir)), names)


def test_a_budget_above_what_the_black_box_allows_is_refused_up_front(clip_dir):
    # the run used to plan silently with the box's 30 queries: a shorter run than the 44 asked for
    box = LocalBlackBox(str(clip_dir), budget=30)
    model = CraFTForImageClassification.from_black_box(
        box, ["red", "green", "blue"], intrinsic_dim=16, refine_hidden=8
    )
    x = box.image_processor(images=[PIL_image(seed=s) for s in range(3)], return_tensors="pt")["pixel_values"]
    args = CraFTTrainingArguments(budget=44, population=10, batch_size=3)
    with pytest.raises(ValueError, match=r"budget=44 queries, but the black box allows only 30 more .*budget=None"):
        model.fit_pixels(x, torch.tensor([0, 1, 2]), args)
    assert box.queries == 0 and not model.config.is_fitted
    # budget=None spends what the box has left, as the message says: 2 generations of 10 + 1 queries
    model.fit_pixels(x, torch.tensor([0, 1, 2]), CraFTTrainingArguments(budget=None, population=10, batch_size=3))
    assert box.queries == 22


def test_a_missing_column_is_named(clip_dir):
    model = CraFTForImageClassification.from_black_box(LocalBlackBox(str(clip_dir)), ["class0", "class1", "class2"])
    data = tiny_image_dataset(3, 1).rename_column("image", "img")
    with pytest.raises(
        KeyError, match=r"no 'image' column \(image_column='image'\); its columns are \['img', 'label'\]"
    ):
        model.fit(data, args={"budget": 22, "population": 10})
