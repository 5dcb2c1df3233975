"""The shared battery (save/load, checkpoint content, Auto classes, pipeline, card, errors) on UEO."""

import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import AdaptedModelTesterMixin, PIL_image, save_tiny_clip
from hf_clipadapt.ueo import UEOForImageClassification

from .helpers import NAMES


def trained_like(model):
    """Move every trained tensor away from its initialisation, as training would."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in model.trainable_parameter_names():
            p = dict(model.named_parameters())[name]
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.config.is_fitted = True
    return model


class TestUEOContract(AdaptedModelTesterMixin):
    model_class = UEOForImageClassification
    max_saved_bytes = 4_500  # 4x32 context + 6 LayerNorms x 2 x 32 floats (2 KB) + a 2 KB header; never a tower
    class_names = tuple(NAMES)
    fit_kwargs = {"args": {"max_steps": 1}}

    def check_initialisation(self, model):
        # the context is the embedding of ctx_init's words, the LayerNorms the pretrained CLIP's
        ctx = model.prompt_learner.ctx.detach()
        words = model.prompt_learner.text_encoder.init_context_from_text(model.config.ctx_init, ctx.shape[-2])
        assert torch.equal(ctx.cpu(), words.to(ctx.dtype).cpu())
        pretrained = dict(CLIPBackbone.from_pretrained(model.config.base_model_name_or_path).model.named_parameters())
        params = dict(model.named_parameters())
        for name in model.trainable_parameter_names()[1:]:
            assert torch.equal(params[name], pretrained[name.removeprefix("backbone.model.")]), name

    def make_model(self, tmp_path):
        clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "tiny-clip"))
        return trained_like(UEOForImageClassification.from_clip(clip, NAMES))

    def make_inputs(self, model):
        return {"pixel_values": model.backbone.preprocess([PIL_image(seed=s) for s in range(4)])}


def test_save_load_gives_identical_ood_scores(tmp_path):
    case = TestUEOContract()
    model = case.make_model(tmp_path)
    model.config.ood_score = "energy"
    model.save_pretrained(tmp_path / "saved")
    reloaded = UEOForImageClassification.from_pretrained(tmp_path / "saved")
    inputs = case.make_inputs(model)
    with torch.no_grad():
        a, b = model.eval()(**inputs), reloaded(**inputs)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.ood_score, b.ood_score)
    assert reloaded.config.ood_score == "energy"
