"""Bad input to the prompt-learning models gets a clear error."""

import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification


@pytest.fixture
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def test_class_names_that_tokenize_to_nothing(clip):
    # "" is now refused by the shared class-name check in from_clip, before any tokenising
    with pytest.raises(ValueError, match="positions \\[1\\] are empty or blank"):
        CoOpForImageClassification.from_clip(clip, ["cat", ""])


def test_context_too_long_for_the_text_positions(clip):
    with pytest.raises(ValueError, match="positions"):
        CoOpForImageClassification.from_clip(clip, ["cat", "dog"], ctx_init=None, n_ctx=80)
    with pytest.raises(ValueError, match="exceed the text tower's 77 positions"):
        CoOpForImageClassification.from_clip(clip, ["cat", "d" * 70], ctx_init=None, n_ctx=8)


def test_class_token_position_is_checked_and_every_position_fits_the_text_tower(clip):
    with pytest.raises(ValueError, match="class_token_position must be one of"):
        CoOpForImageClassification.from_clip(clip, ["cat", "dog"], class_token_position="start")
    # moving the name keeps the prompt's length, so the limit is the same for every position: 77 fits, 78 does not
    for position in ("end", "middle", "front"):
        with pytest.raises(ValueError, match="exceed the text tower's 77 positions"):
            CoOpForImageClassification.from_clip(
                clip, ["cat", "d" * 67], ctx_init=None, n_ctx=8, class_token_position=position
            )
        CoOpForImageClassification.from_clip(
            clip, ["cat", "d" * 66], ctx_init=None, n_ctx=8, class_token_position=position
        )


def test_nan_features_are_refused(clip):
    model = TipAdapterForImageClassification.from_clip(clip, ["cat", "dog"])
    x = torch.full((2, clip.embed_dim), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        model(image_features=x)


def test_features_of_the_wrong_width_are_refused(clip):
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"])
    with pytest.raises(ValueError, match=r"\[batch, 16\]"):
        model(image_features=torch.randn(2, 7))


@pytest.fixture
def features(clip):
    torch.manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(8, clip.embed_dim), dim=-1), torch.arange(8) % 2


def test_zero_epochs_is_refused_and_leaves_the_model_unfitted(clip, features):
    # num_train_epochs=0 used to run no step and still set config.is_fitted
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"])
    with pytest.raises(ValueError, match="num_train_epochs=0 with no max_steps trains nothing"):
        model.fit_features(*features, args={"num_train_epochs": 0})
    assert model.config.is_fitted is False


def test_resuming_from_a_checkpoint_of_another_method_names_both(clip, features, tmp_path):
    # used to fail in the optimizer's state loading with a parameter-group error
    from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification

    out = tmp_path / "run"
    adapter = CLIPAdapterForImageClassification.from_clip(clip, ["cat", "dog"])
    adapter.fit_features(*features, args={"num_train_epochs": 1, "output_dir": str(out), "save_strategy": "epoch"})
    checkpoint = next(out.glob("checkpoint-*"))
    coop = CoOpForImageClassification.from_clip(clip, ["cat", "dog"])
    args = {"num_train_epochs": 2, "output_dir": str(out), "save_strategy": "epoch"}
    with pytest.raises(ValueError, match=r"saved by a 'clip_adapter' model, and this is a 'coop'.*same method"):
        coop.fit_features(*features, args=args, resume_from_checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match="saved by a 'clip_adapter' model"):
        coop.fit_features(*features, args=args, resume_from_checkpoint=True)
