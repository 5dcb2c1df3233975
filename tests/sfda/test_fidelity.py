"""The SFDA recipe against the official code (tim-learn/GeoNet23_casia_tim, tim-learn/SHOT):
SHOT's first pseudo-label round, the per-stage epochs, the parameter-only EMA teacher, the
GeoImNet/GeoPlace stage-2 losses and the named presets. Each test failed before its fix."""

import importlib.util
import math
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.sfda import PRESETS, SFDAConfig, SFDATrainer, SFDATrainingArguments, fit
from hf_clipadapt.sfda import functional as SF
from hf_clipadapt.sfda.training import pseudo_labels

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sfda_two_stage.py"


def _skewed_case(seed=0, n=60, num_classes=6, dim=5):
    """Random features and predictions whose argmax never falls on classes 4 and 5."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=g, dtype=torch.float64)
    logits = torch.randn(n, num_classes, generator=g, dtype=torch.float64)
    logits[:, :3] += 3.0
    probs = logits.softmax(-1)
    assert set(probs.argmax(1).tolist()) == {0, 1, 2, 3}
    return feats, probs


@pytest.mark.parametrize("rounds", [1, 2])
def test_shot_first_round_only_offers_classes_that_own_an_argmax(rounds):
    # SHOT, object/image_target.py lines 280-286: labelset = classes whose argmax count > 0,
    # already in round 1. The old code let every soft centroid compete in round 1, and here
    # 15 (1 round) / 19 (2 rounds) of 60 labels went to classes 4 and 5
    feats, probs = _skewed_case()
    labels = SF.shot_pseudo_labels(feats, probs, rounds=rounds)
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    # threshold (SHOT's --threshold): a class needs more than that many argmax samples
    counts = torch.bincount(probs.argmax(1), minlength=6)
    strict = SF.shot_pseudo_labels(feats, probs, rounds=1, threshold=int(counts[:4].min()))
    assert int(counts[:4].argmin()) not in strict.tolist()


def test_stage_2_defaults_to_five_epochs_and_stage_1_to_ten():
    # main_unida.py line 312 (args.max_epoch = 5 in train_target) and line 457 (--max_epoch 10)
    assert SFDATrainingArguments(stage="target").num_train_epochs == 5
    assert SFDATrainingArguments(stage="source").num_train_epochs == 10
    assert SFDATrainingArguments(stage="target", num_train_epochs=2).num_train_epochs == 2


def test_fit_runs_stage_2_for_five_epochs_by_default(make_model, tiny_dataset, to_pixels):
    model = make_model(strategy="shot")
    out = fit(model, tiny_dataset.remove_columns("label"), stage="target", transform=to_pixels, batch_size=4)
    assert out["global_step"] == 5 * 3  # 12 samples in batches of 4


def test_ema_teacher_averages_parameters_only(make_model, tiny_dataset, to_pixels, monkeypatch):
    # main_unida.py lines 256-262: the teacher is a copy of the model (buffers included) at 40%
    # of training, and afterwards only zip(ema_model.parameters(), model.parameters()) is averaged
    trainers, at_copy = [], {}
    original = SFDATrainer.maybe_start_teacher

    def spy(self):
        started = self.method.teacher_started
        original(self)
        if self.method.teacher_started and not started:
            trainers.append(self)
            at_copy.update({k: v.clone() for k, v in self.teacher.named_buffers()})
            at_copy.update({"p:" + k: v.clone() for k, v in self.teacher.named_parameters()})

    monkeypatch.setattr(SFDATrainer, "maybe_start_teacher", spy)
    kwargs = dict(stage="source", transform=to_pixels, epochs=2, batch_size=4)
    fit(make_model(), tiny_dataset, **kwargs)
    teacher, student = trainers[-1].teacher, trainers[-1].model
    mean = "head.norm.running_mean"
    assert not torch.equal(dict(student.named_buffers())[mean], at_copy[mean])  # the student's moved on
    torch.testing.assert_close(dict(teacher.named_buffers())[mean], at_copy[mean], rtol=0, atol=0)
    weight = "head.classifier.weight"
    assert not torch.equal(dict(teacher.named_parameters())[weight], at_copy["p:" + weight])  # averaged

    at_copy.clear()
    fit(make_model(), tiny_dataset, ema_average_buffers=True, **kwargs)  # the old behaviour, as an option
    assert not torch.equal(dict(trainers[-1].teacher.named_buffers())[mean], at_copy[mean])


def test_topk_ce_is_geoplace_weighted_cross_entropy():
    # main_place.py lines 360-370: 0.3·CE(top-1) + 0.1·CE(top-2), no IM term
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64)
    cand = torch.randn(7, 5, generator=g).topk(3, dim=1).indices
    expected = 0.3 * F.cross_entropy(logits, cand[:, 0]) + 0.1 * F.cross_entropy(logits, cand[:, 1])
    torch.testing.assert_close(SF.topk_cross_entropy_loss(logits, cand), expected)
    with pytest.raises(ValueError, match="candidates per sample"):
        SF.topk_cross_entropy_loss(logits, cand[:, :1])


@pytest.mark.parametrize("strategy", ["centroid", "topk_ce"])
def test_geoimnet_and_geoplace_labels_come_once_from_the_source_model(strategy):
    feats, probs = _skewed_case()
    cfg = SFDAConfig(backbone=None, num_labels=6, strategy=strategy)
    args = SFDATrainingArguments.from_preset("geoimnet" if strategy == "centroid" else "geoplace", "target")
    first = pseudo_labels(cfg, args, probs.log(), feats, {})
    if strategy == "centroid":  # main_imnet.py lines 404-419: one soft round, argmax-owning classes only
        assert torch.equal(first["labels"], SF.shot_pseudo_labels(feats, probs, rounds=1))
    else:  # main_place.py lines 404-408: the top-2 of the source model
        assert torch.equal(first["candidates"], probs.topk(2, dim=1).indices)
    again = pseudo_labels(cfg, args, torch.randn_like(probs), feats, first)
    assert again is first  # never recomputed (main_imnet.py line 338 and main_place.py line 338: before the loop)


def test_presets_set_strategy_epochs_and_losses(make_model, tiny_dataset, to_pixels):
    assert set(PRESETS) == {"geounida", "geoimnet", "geoplace"}
    unida = SFDAConfig.from_preset("GeoUniDA", backbone=None, num_labels=3)
    assert (unida.strategy, unida.unknown_threshold, unida.preset) == ("universal", 0.5, "geounida")
    imnet = SFDAConfig(backbone=None, num_labels=3, preset="geoimnet")
    assert (imnet.strategy, imnet.unknown_threshold) == ("centroid", None)
    a = SFDATrainingArguments.from_preset("geoimnet", "target")
    assert (a.num_train_epochs, a.shot_rounds, a.pseudo_label_weight) == (1, 1, 0.3)
    assert SFDATrainingArguments.from_preset("geoplace", "target").topk_weights == (0.3, 0.1)
    assert SFDATrainingArguments.from_preset("geounida", "target").num_train_epochs == 5
    assert SFDATrainingArguments.from_preset("geoplace", "source").num_train_epochs == 10
    with pytest.raises(ValueError, match="unknown preset .* for SFDA"):
        SFDAConfig.from_preset("office")
    # fit takes the preset's training settings as defaults: GeoPlace adapts for 1 epoch
    model = make_model(preset="geoplace")
    assert model.config.strategy == "topk_ce"
    out = fit(model, tiny_dataset.remove_columns("label"), stage="target", transform=to_pixels, batch_size=4)
    assert out["global_step"] == 3


def test_example_trains_stage_2_on_augmented_images():
    # main_unida.py lines 95-99: stage 2's training loader uses the training (random crop + flip)
    # transform; only the pseudo-label pass uses the test transform
    spec = importlib.util.spec_from_file_location("sfda_two_stage", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    sys.modules["sfda_two_stage"] = example
    spec.loader.exec_module(example)
    args = Namespace(command="stage2", image_size=16, no_flip=False)
    train_tf, eval_tf = example.stage_transforms(args, ([0.5] * 3, [0.5] * 3))
    assert train_tf.augment and not eval_tf.augment
    from PIL import Image

    img = Image.frombytes("RGB", (20, 20), bytes(range(256)) * 4 + bytes(176))
    views = [train_tf([img], torch.tensor([0]), v) for v in range(4)]
    assert views[0].shape == (1, 3, 16, 16)
    assert any(not torch.equal(views[0], v) for v in views[1:])  # a new crop/flip per epoch
    assert torch.equal(eval_tf([img], torch.tensor([0]), 0), eval_tf([img], torch.tensor([0]), 3))
    ns = Namespace(
        output_dir="/tmp/x",
        batch_size=4,
        learning_rate=1e-2,
        seed=0,
        num_workers=0,
        report_to=None,
        checkpoint_every=0,
        model_selection="last",
        epochs=None,
        strategy="centroid",
    )
    assert example.training_arguments(ns, "target").num_train_epochs == 1  # GeoImNet's preset
    ns.strategy = "universal"
    assert example.training_arguments(ns, "target").num_train_epochs == 5


def test_head_initialisation_is_shot_s_init_weights_unless_asked_for_the_former_one():
    """tim-learn/SHOT object/network.py `init_weights` (reused by GeoNet23_casia_tim network.py
    lines 15-25): Xavier-normal Linear weights, zero biases, BatchNorm weight ~ N(1, 0.02)."""
    from hf_clipadapt.sfda import SFDAForImageClassification

    class Pooled512(torch.nn.Module):  # pixel_values -> [B, 512], as a pooled backbone
        feature_dim = 512

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 512, 1)

        def forward(self, pixel_values):
            return self.conv(pixel_values).mean((2, 3))

    def head(**kwargs):
        torch.manual_seed(0)
        model = SFDAForImageClassification.from_backbone(Pooled512(), num_labels=200, bottleneck_dim=256, **kwargs)
        return model.head

    official = head()
    for linear, fan in ((official.bottleneck, 512 + 256), (official.classifier, 256 + 200)):
        xavier_std = math.sqrt(2.0 / fan)  # 0.051 and 0.066; PyTorch's default gave 0.026 and 0.036
        assert abs(float(linear.weight.std()) / xavier_std - 1) < 0.05
        assert torch.count_nonzero(linear.bias) == 0
    norm = official.norm.weight
    assert abs(float(norm.mean()) - 1) < 0.01 and 0.015 < float(norm.std()) < 0.025  # N(1, 0.02), not all ones
    former = head(head_init="normal")
    assert abs(float(former.bottleneck.weight.std()) - 0.02) < 0.002 and torch.equal(
        former.norm.weight, torch.ones(256)
    )
    with pytest.raises(ValueError, match="head_init must be one of"):
        SFDAConfig(backbone=None, torch_backbone="efficientnet-lite0", backbone_feature_dim=8, head_init="xavier")
