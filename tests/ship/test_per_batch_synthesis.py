"""SHIP's official synthesis as an option (`fit_with_synthesized(..., synthesis="per_batch")`):
every training batch of B real features gets B features synthesized for it alone, of random
label-only classes (mrflogs/SHIP `main_coop_vae.py` L138-151), the default for the models that take
it; Tip-Adapter and `synthesis="fixed"` train on one fixed set."""

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import select_classes
from hf_clipadapt.ship import PerBatchSynthesis, SHIPGenerator, fit_with_synthesized
from hf_clipadapt.testing_utils import save_tiny_clip, tiny_image_dataset
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

NAMES = ["red", "blue", "green", "black"]
BASE, NEW = ["red", "green"], ["blue", "black"]  # new classes not contiguous in the model's order
NEW_IDS = {1, 3}
MODELS = {"coop": CoOpForImageClassification, "clip_adapter": CLIPAdapterForImageClassification}
# 8 real features, batches of 2, 2 micro-batches per optimizer step: 2 steps per pass
ARGS = {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    torch.set_num_threads(1)
    clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path_factory.mktemp("clip")))
    base = select_classes(tiny_image_dataset(4, 4, class_names=NAMES), BASE)
    generator = SHIPGenerator.from_clip(clip, BASE, encoder_hidden_dim=16, bias_hidden_dim=16)
    generator.fit(base, views=1, args={"num_train_epochs": 2})
    return clip, base, generator


def record_batches(model) -> list:
    """The (features, labels) of every forward pass of `model` (fit only runs training steps)."""
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["image_features"].clone(), kwargs["labels"].clone())),
        with_kwargs=True,
    )
    return seen


def per_batch_fit(clip, base, generator, name="coop", seed=0, **kw):
    model = MODELS[name].from_clip(clip, NAMES)
    batches = record_batches(model)
    fit_with_synthesized(model, base, generator, synthesis="per_batch", views=1, seed=seed, args=ARGS, **kw)
    return model, batches


@pytest.mark.filterwarnings("error:.*no training sample")  # the drawn classes count as covered
@pytest.mark.parametrize("name", MODELS)
def test_every_batch_holds_b_real_and_b_fresh_synthesized_features(setting, name):
    clip, base, generator = setting
    model, batches = per_batch_fit(clip, base, generator, name)
    assert len(batches) == 2 * 4, "2 passes of 4 micro-batches of real features"
    synthesized = []
    for x, y in batches:
        assert x.shape == (4, clip.embed_dim), "2 real + 2 synthesized"
        assert set(y[:2].tolist()) <= {0, 2}, "the real features come first, of base classes"
        assert set(y[2:].tolist()) <= NEW_IDS, "the synthesized ones are of new classes only"
        torch.testing.assert_close(x[2:].norm(dim=-1), torch.ones(2))
        synthesized.append(x[2:])
    for i in range(len(synthesized)):
        for j in range(i):  # fresh z for every micro-batch, also within one optimizer step
            assert not torch.allclose(synthesized[i], synthesized[j], atol=1e-4), (i, j)
    drawn = torch.cat([y[2:] for _, y in batches])
    assert set(drawn.tolist()) == NEW_IDS, "random classes: both new classes are drawn"
    assert model.config.synthesized_classes == NEW and model.config.synthesized_per_class is None


def test_same_seed_same_weights_other_seed_other_weights(setting):
    clip, base, generator = setting
    first, _ = per_batch_fit(clip, base, generator, seed=3)
    again, _ = per_batch_fit(clip, base, generator, seed=3)
    other, _ = per_batch_fit(clip, base, generator, seed=4)
    for k, v in first.saved_state_dict().items():
        assert torch.equal(again.saved_state_dict()[k], v), k
    assert not torch.equal(
        other.saved_state_dict()["prompt_learner.ctx"], first.saved_state_dict()["prompt_learner.ctx"]
    )


def test_a_resumed_run_draws_what_the_straight_run_drew(setting, tmp_path):
    """The draws are keyed by the optimizer step, not carried in a random state: resuming at
    step 3 of 4 gives the straight run's weights."""
    clip, _, generator = setting
    g = torch.Generator().manual_seed(0)
    x, y = F.normalize(torch.randn(8, clip.embed_dim, generator=g), dim=-1), torch.tensor([0, 2] * 4)
    args = {**ARGS, "output_dir": str(tmp_path)}

    def run(**kw):
        model = CoOpForImageClassification.from_clip(clip, NAMES)
        model.fit_features(x, y, extra_features=PerBatchSynthesis(model, generator, NEW), **kw)
        return model.saved_state_dict()

    straight = run(args=ARGS)
    run(args={**args, "save_strategy": "steps", "save_steps": 3})
    resumed = run(args=args, resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    for k, v in straight.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=1e-6 * (v.abs().max().item() + 1))


def test_the_default_is_the_official_draw_where_the_model_takes_it(setting):
    clip, base, generator = setting
    coop = CoOpForImageClassification.from_clip(clip, NAMES)
    batches = record_batches(coop)
    fit_with_synthesized(coop, base, generator, views=1, args={"num_train_epochs": 2})
    assert coop.config.synthesized_per_class is None  # drawn per batch
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    synthesized = y.unsqueeze(1).eq(torch.tensor(sorted(NEW_IDS))).any(1)
    assert synthesized.sum() == (~synthesized).sum() == 2 * 8  # as many as the real ones, 2 passes of 8
    assert torch.unique(x[synthesized], dim=0).shape[0] == 16  # every one drawn afresh
    tip = TipAdapterForImageClassification.from_clip(clip, NAMES, train_keys=True)
    fit_with_synthesized(tip, base, generator, views=1, args={"num_train_epochs": 1})
    assert tip.config.synthesized_per_class == 16  # its cache keys: one fixed set (shots 16 × views 1)


def test_fixed_synthesis_is_one_set(setting):
    clip, base, generator = setting
    model = CoOpForImageClassification.from_clip(clip, NAMES)
    batches = record_batches(model)
    fit_with_synthesized(model, base, generator, n_per_class=4, views=1, args={"num_train_epochs": 2})
    assert model.config.synthesized_per_class == 4
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert len(y) == 2 * (8 + 2 * 4), "each pass sees the 8 real and the 8 synthesized features once"
    synthesized = x[y.unsqueeze(1).eq(torch.tensor(sorted(NEW_IDS))).any(1)]
    assert torch.unique(synthesized, dim=0).shape[0] == 8, "the same 8 synthesized features in both passes"


def test_per_batch_refusals(setting):
    clip, base, generator = setting
    tip = TipAdapterForImageClassification.from_clip(clip, NAMES, train_keys=True)
    with pytest.raises(ValueError, match="cache keys.*synthesis='fixed'"):
        fit_with_synthesized(tip, base, generator, synthesis="per_batch")
    with pytest.raises(ValueError, match="fixed .*set"):  # handed the sampler directly
        tip.fit_features(
            torch.randn(2, clip.embed_dim), torch.tensor([0, 2]), extra_features=PerBatchSynthesis(tip, generator, NEW)
        )
    coop = CoOpForImageClassification.from_clip(clip, NAMES)
    with pytest.raises(ValueError, match="n_per_class"):
        fit_with_synthesized(coop, base, generator, synthesis="per_batch", n_per_class=4)
    with pytest.raises(ValueError, match="synthesis must be one of"):
        fit_with_synthesized(coop, base, generator, synthesis="fresh")
    with pytest.raises(ValueError, match="overlap"):
        PerBatchSynthesis(coop, generator, ["red", "blue"])


def test_the_card_says_how_the_features_were_synthesized(setting, tmp_path):
    clip, base, generator = setting
    model, _ = per_batch_fit(clip, base, generator)
    model.save_pretrained(tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "every training batch got as many features as it had real ones, synthesized afresh" in card
    assert "blue" in card and "None features" not in card
