"""The base-to-new protocol: the class split, relabelled subsets, and scoring a base+new
model within each half's own label space."""

import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.data import base_new_class_split, base_to_new_split, select_classes
from hf_clipadapt.metrics import accuracy
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_dataset, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

NAMES = ["red", "green", "blue", "black", "white"]


def test_base_is_the_first_half_of_the_label_ids_not_of_the_sorted_names():
    # CoOp's subsample_classes keeps the sorted label ids [:ceil(n/2)]; names are in id order.
    assert base_new_class_split(NAMES) == (["red", "green", "blue"], ["black", "white"])
    assert base_new_class_split(["b", "a"]) == (["b"], ["a"])
    # ImageNet-like: ids follow wnids, so id order and name order disagree.
    wnid_ordered = ["tench", "goldfish", "great white shark", "tiger shark"]
    assert base_new_class_split(wnid_ordered) == (["tench", "goldfish"], ["great white shark", "tiger shark"])
    with pytest.raises(ValueError, match="at least 2"):
        base_new_class_split(["a"])


def test_select_classes_keeps_rows_and_relabels_in_the_given_order():
    data = tiny_image_dataset(num_classes=5, per_class=2, class_names=NAMES)
    part = select_classes(data, ["white", "green"])
    assert part.features["label"].names == ["white", "green"]
    assert part["label"] == [1, 1, 0, 0]  # green rows (id 1) come first in the data
    with pytest.raises(ValueError, match="not in the dataset"):
        select_classes(data, ["purple"])
    split = base_to_new_split(data)
    assert split["base"].num_rows == 6 and split["new"].num_rows == 4
    assert split["base"].features["label"].names == ["red", "green", "blue"]
    assert split["new"].features["label"].names == ["black", "white"]


def test_evaluate_scores_a_subset_within_its_own_label_space():
    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    data = tiny_image_dataset(num_classes=5, per_class=3, class_names=NAMES)
    model = TipAdapterForImageClassification.from_clip(clip, NAMES)
    new = select_classes(data, ["red", "white"])
    got = model.evaluate(new)["accuracy"]
    feats, labels = model.encode_dataset(new)
    logits = model.predict_features(feats)[:, [NAMES.index("red"), NAMES.index("white")]]
    assert got == pytest.approx(accuracy(logits, labels))
    with pytest.raises(ValueError, match="not among this model's"):
        TipAdapterForImageClassification.from_clip(clip, NAMES[:2]).evaluate(new)


def test_for_classes_carries_the_trained_class_agnostic_part():
    from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
    from hf_clipadapt.coop import CoOpForImageClassification

    clip = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    x = torch.nn.functional.normalize(torch.randn(4, clip.embed_dim), dim=-1)
    coop = CoOpForImageClassification.from_clip(clip, NAMES[:3])
    with torch.no_grad():
        coop.prompt_learner.ctx.add_(0.1)
    new = coop.for_classes(NAMES[3:])
    assert torch.equal(new.prompt_learner.ctx, coop.prompt_learner.ctx)
    both = coop.for_classes(NAMES)  # the same context scores old and new names alike
    torch.testing.assert_close(both.logits_from_features(x)[:, :3], coop.logits_from_features(x), rtol=1e-5, atol=1e-4)
    adapter = CLIPAdapterForImageClassification.from_clip(clip, NAMES[:3])
    moved = adapter.for_classes(NAMES[3:])
    assert torch.equal(moved.adapter[0].weight, adapter.adapter[0].weight)
    expected = clip.zero_shot_classifier(NAMES[3:], None).float()
    torch.testing.assert_close(moved.text_weights, expected)
    tip = TipAdapterForImageClassification.from_clip(clip, NAMES[:3])
    tip.fit_features(x, torch.tensor([0, 1, 2, 0]))
    zero_shot = tip.for_classes(NAMES[3:])
    assert zero_shot.config.cache_size == 0 and not zero_shot.config.eval_results
    with pytest.raises(ValueError, match="CSC"):
        CoOpForImageClassification.from_clip(clip, NAMES[:3], class_specific=True).for_classes(NAMES[3:])
