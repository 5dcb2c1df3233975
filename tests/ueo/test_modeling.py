"""UEOForImageClassification: what is trained (by name), what it returns, what it leaves alone."""

import pytest
import torch
from torch import nn

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import PIL_image, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor
from hf_clipadapt.ueo import UEOForImageClassification, ueo_loss
from hf_clipadapt.ueo.functional import energy_score, max_softmax_score

from .helpers import NAMES, backbone

LN = "backbone.model.vision_model"
EXPECTED_LN = (
    [f"{LN}.pre_layrnorm.{p}" for p in ("weight", "bias")]
    + [
        f"{LN}.encoder.layers.{i}.{n}.{p}"
        for i in range(2)
        for n in ("layer_norm1", "layer_norm2")
        for p in ("weight", "bias")
    ]
    + [f"{LN}.post_layernorm.{p}" for p in ("weight", "bias")]
)


def pixels(model, n=4):
    return model.backbone.preprocess([PIL_image(seed=s) for s in range(n)])


def test_trainable_parameters_by_name():
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(["prompt_learner.ctx", *EXPECTED_LN])
    assert model.trainable_parameter_names() == ["prompt_learner.ctx", *EXPECTED_LN]
    # the context is the words of "a photo of a" (4 tokens for CLIP's BPE, 9 for the tiny character-level one)
    n_words = len(model.backbone.tokenizer("a photo of a", add_special_tokens=False)["input_ids"])
    assert model.prompt_learner.ctx.shape == (n_words, 32) and model.config.n_ctx == n_words
    assert set(model.saved_state_dict()) == set(trainable)


def test_gradients_reach_only_the_intended_parameters():
    model = UEOForImageClassification.from_clip(backbone(), NAMES).train()
    out = model(pixel_values=pixels(model))
    ueo_loss(out.logits, torch.tensor([0.9, 0.5, 0.4, 0.8])).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {"prompt_learner.ctx", *EXPECTED_LN}
    assert all(p.grad is None for n, p in model.named_parameters() if n not in with_grad)


def test_a_shared_clip_is_left_untouched():
    clip = backbone()
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    model = UEOForImageClassification.from_clip(clip, NAMES)
    with torch.no_grad():
        for p in model.layernorm_parameters():
            p.add_(0.5)
    assert all(torch.equal(v, before[k]) for k, v in clip.model.state_dict().items())
    assert not any(p.requires_grad for p in clip.model.parameters())
    # the frozen weights are shared, not copied
    ours = {id(p) for p in model.backbone.model.parameters()}
    shared = [p for p in clip.model.parameters() if id(p) in ours]
    assert len(shared) == len(list(clip.model.parameters())) - len(EXPECTED_LN)


def test_initial_model_is_zero_shot_clip_and_returns_an_ood_score():
    clip = backbone()
    model = UEOForImageClassification.from_clip(clip, NAMES)
    pv = pixels(model)
    with torch.no_grad(), pytest.warns(UserWarning, match="not been fitted"):
        out = model(pixel_values=pv)
    zs = clip.logit_scale * clip.encode_images(pv) @ clip.zero_shot_classifier(NAMES, ["a photo of a {}."]).T
    torch.testing.assert_close(out.logits, zs, rtol=0, atol=1e-5 * clip.logit_scale)
    # default: the official score, max softmax of the unscaled cosines
    torch.testing.assert_close(out.ood_score, max_softmax_score(out.logits / clip.logit_scale))
    scaled = UEOForImageClassification.from_clip(clip, NAMES, ood_score="max_softmax")
    with torch.no_grad(), pytest.warns(UserWarning, match="not been fitted"):
        torch.testing.assert_close(scaled(pixel_values=pv).ood_score, max_softmax_score(out.logits))
    energy = UEOForImageClassification.from_clip(clip, NAMES, ood_score="energy")
    with torch.no_grad(), pytest.warns(UserWarning, match="not been fitted"):
        torch.testing.assert_close(energy(pixel_values=pv).ood_score, energy_score(out.logits), rtol=1e-5, atol=1e-4)


def test_vision_tower_without_layernorm_is_refused_naming_the_model_type():
    model = tiny_clip_model()
    vision = model.vision_model
    for parent in list(vision.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, nn.Identity())
    clip = CLIPBackbone(model, tiny_clip_tokenizer(), tiny_image_processor())
    with pytest.raises(ValueError, match="'clip' model has no LayerNorm"):
        UEOForImageClassification.from_clip(clip, NAMES)


@pytest.mark.parametrize("names, match", [([], "empty"), (["red", "red"], "duplicate")])
def test_bad_class_lists(names, match):
    with pytest.raises(ValueError, match=match):
        UEOForImageClassification.from_clip(backbone(), names)


def test_ood_score_option_is_checked():
    with pytest.raises(ValueError, match="ood_score must be one of"):
        UEOForImageClassification.from_clip(backbone(), NAMES, ood_score="odin")
