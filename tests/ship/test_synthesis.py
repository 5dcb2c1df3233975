"""SHIP's use: synthesized features of label-only classes join the real base features,
and any of the three baselines trains on the union into one base+new model."""

import pytest
import torch
import yaml

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import select_classes
from hf_clipadapt.ship import SHIPGenerator, fit_with_synthesized, label_only_classes, synthesize_for
from hf_clipadapt.testing_utils import save_tiny_clip, tiny_image_dataset
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

NAMES = ["red", "green", "blue", "black"]
BASE, NEW = NAMES[:2], NAMES[2:]
QUICK = {"num_train_epochs": 2}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    torch.set_num_threads(1)
    clip = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path_factory.mktemp("clip")))
    data = tiny_image_dataset(4, 4, class_names=NAMES)
    base = select_classes(data, BASE)
    generator = SHIPGenerator.from_clip(clip, BASE, encoder_hidden_dim=16, bias_hidden_dim=16)
    generator.fit(base, views=1, args=QUICK)
    return clip, data, base, generator


def test_label_only_classes_and_synthesized_labels_index_the_model(setting):
    clip, _, base, generator = setting
    model = CoOpForImageClassification.from_clip(clip, ["blue", "red", "green", "black"])
    assert label_only_classes(model, base) == ["blue", "black"]
    feats, labels = synthesize_for(model, generator, ["blue", "black"], n_per_class=3, seed=0)
    assert feats.shape == (6, clip.embed_dim) and labels.tolist() == [0, 0, 0, 3, 3, 3]
    again, _ = synthesize_for(model, generator, ["blue", "black"], n_per_class=3, seed=0)
    assert torch.equal(feats, again), "a seed fixes the synthesized features"


def test_tip_adapter_f_cache_holds_real_and_synthesized_keys(setting, tmp_path):
    clip, data, base, generator = setting
    model = TipAdapterForImageClassification.from_clip(clip, NAMES, train_keys=True)
    fit_with_synthesized(model, base, generator, n_per_class=5, views=1, args=QUICK)
    assert model.config.cache_size == 8 + 2 * 5
    assert model.cache_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 5 + [3] * 5
    assert model.config.synthesized_classes == NEW and model.config.synthesized_per_class == 5
    model.evaluate(select_classes(data, NEW), record_as="tiny-new")
    model.save_pretrained(tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "blue" in card and "synthesized" in card.lower()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["model-index"][0]["results"], "the new-class accuracy reaches the card"
    loaded = TipAdapterForImageClassification.from_pretrained(tmp_path / "model")
    x = torch.nn.functional.normalize(torch.randn(3, clip.embed_dim), dim=-1)
    torch.testing.assert_close(loaded(image_features=x).logits, model(image_features=x).logits)


def test_default_count_matches_a_labelled_class(setting):
    clip, _, base, generator = setting
    model = CoOpForImageClassification.from_clip(clip, NAMES)
    fit_with_synthesized(model, base, generator, synthesis="fixed", shots=2, views=1, args=QUICK)
    assert model.config.synthesized_per_class == 2


def test_refusals(setting):
    clip, data, base, generator = setting
    with pytest.raises(ValueError, match="nothing to synthesize"):
        fit_with_synthesized(CoOpForImageClassification.from_clip(clip, BASE), base, generator)
    overlapping = CoOpForImageClassification.from_clip(clip, NAMES)
    with pytest.raises(ValueError, match="overlap"):
        fit_with_synthesized(
            overlapping, select_classes(data, ["red"]), generator
        )  # green: trained on, unlabelled here
    fresh = SHIPGenerator.from_clip(clip, BASE, encoder_hidden_dim=16, bias_hidden_dim=16)
    with pytest.warns(UserWarning, match="not been fitted"):
        synthesize_for(overlapping, fresh, NEW, n_per_class=1, seed=0)
