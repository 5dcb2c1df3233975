"""CoOp: zero-shot equivalence at the initial context, what it saves, and the shared battery."""

import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.testing_utils import (
    AdaptedModelTesterMixin,
    PIL_image,
    assert_initialised,
    save_tiny_clip,
    tiny_clip_model,
    tiny_clip_tokenizer,
    tiny_image_processor,
)

NAMES = ["red", "green", "blue"]


def backbone():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def test_initial_context_equals_zero_shot_with_that_template():
    clip = backbone()
    model = CoOpForImageClassification.from_clip(clip, NAMES, ctx_init="a photo of a")
    x = F.normalize(torch.randn(4, clip.embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    zero_shot = clip.logit_scale * x @ clip.zero_shot_classifier(NAMES, ["a photo of a {}."]).T
    logits = model.logits_from_features(x)
    torch.testing.assert_close(logits, zero_shot, rtol=0, atol=1e-5 * clip.logit_scale)


def test_only_the_context_is_trainable_and_saved(tmp_path):
    clip = backbone()
    model = CoOpForImageClassification.from_clip(clip, NAMES, ctx_init=None, n_ctx=4, class_specific=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_learner.ctx"]
    assert set(model.saved_state_dict()) == {"prompt_learner.ctx"}
    assert model.prompt_learner.ctx.shape == (3, 4, 32)


class TestCoOpContract(AdaptedModelTesterMixin):
    model_class = CoOpForImageClassification
    max_saved_bytes = 3_000  # 9 tokens x 32 floats + the header: the text tower is never saved
    class_names = tuple(NAMES)
    fit_kwargs = {"shots": 2, "views": 1, "args": {"max_steps": 1}}

    def check_initialisation(self, model):
        # ctx_init=None: the context is drawn from N(0, 0.02²) (CoOp's `nn.init.normal_(std=0.02)`);
        # with words, it is their embeddings (test_initial_context_equals_zero_shot_with_that_template)
        fresh = CoOpForImageClassification.from_clip(model.backbone, NAMES, ctx_init=None, n_ctx=16)
        assert_initialised(fresh.prompt_learner.ctx, "ctx", mean=0.0, std=0.02)

    def make_model(self, tmp_path):
        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
        model = CoOpForImageClassification.from_clip(clip, NAMES)
        with torch.no_grad():  # a context that differs from its initialisation, as after training
            model.prompt_learner.ctx.add_(0.05 * torch.randn_like(model.prompt_learner.ctx))
        model.config.is_fitted = True
        return model

    def make_inputs(self, model):
        return {"pixel_values": model.backbone.preprocess([PIL_image(seed=s) for s in range(4)])}


def test_class_token_position_survives_save_load_and_for_classes(tmp_path):
    """CoOp's CLASS_TOKEN_POSITION (trainers/coop.py L126-180) is part of the config: the
    reloaded model and the model on other class names build the same kind of prompt."""
    clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
    model = CoOpForImageClassification.from_clip(clip, NAMES, class_token_position="middle")
    with torch.no_grad():
        model.prompt_learner.ctx.add_(0.05 * torch.randn_like(model.prompt_learner.ctx))
    model.config.is_fitted = True
    end = CoOpForImageClassification.from_clip(clip, NAMES)
    with torch.no_grad():
        end.prompt_learner.ctx.copy_(model.prompt_learner.ctx)
    x = F.normalize(torch.randn(4, clip.embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert (model.logits_from_features(x) - end.logits_from_features(x)).abs().max() > 1e-3

    model.save_pretrained(tmp_path / "coop-middle")
    loaded = CoOpForImageClassification.from_pretrained(tmp_path / "coop-middle", backbone=clip)
    assert loaded.config.class_token_position == "middle"
    torch.testing.assert_close(loaded.logits_from_features(x), model.logits_from_features(x), rtol=0, atol=0)

    new = ["cyan", "dark_green"]
    moved = model.for_classes(new)
    assert moved.config.class_token_position == "middle"
    # for_classes = a fresh middle-position model on the new names with the trained context
    fresh = CoOpForImageClassification.from_clip(clip, new, class_token_position="middle")
    with torch.no_grad():
        fresh.prompt_learner.ctx.copy_(model.prompt_learner.ctx)
    torch.testing.assert_close(moved.logits_from_features(x), fresh.logits_from_features(x), rtol=0, atol=0)


def test_card_shows_where_the_class_token_sits():
    clip = backbone()
    for position, prompt in [
        ("end", '"[v1 … v5] {class}."'),
        ("middle", '"[v1 … v2] {class} [v3 … v5]."'),
        ("front", '"{class} [v1 … v5]."'),
    ]:
        model = CoOpForImageClassification.from_clip(
            clip, NAMES, ctx_init=None, n_ctx=5, class_token_position=position
        )
        card = str(model.create_model_card())
        assert "\n    logits = " in card and prompt in card, (position, card)
