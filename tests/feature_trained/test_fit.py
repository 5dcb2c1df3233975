"""`fit` of the feature-trained models (CoOp, CLIP-Adapter, Tip-Adapter-F, SHIP) through
the shared training path: what trains, exact resume, subsets of classes and extra
(synthesized) features."""

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import select_classes
from hf_clipadapt.ship import SHIPGenerator
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_dataset, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

NAMES = ["red", "green", "blue"]
CLASSIFIERS = {
    "coop": (CoOpForImageClassification, {}),
    "clip_adapter": (CLIPAdapterForImageClassification, {}),
    "tip_adapter_f": (TipAdapterForImageClassification, {"train_keys": True}),
}
QUICK = {"num_train_epochs": 4, "learning_rate": 5e-3}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def features(n_per_class=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    return F.normalize(centres[labels] + 0.3 * torch.randn(len(labels), 16, generator=g), dim=-1), labels


def loss_on(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model.logits_from_features(x), y).item()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_fit_lowers_the_training_loss_and_trains_only_the_adapted_part(name):
    cls, kw = CLASSIFIERS[name]
    model = cls.from_clip(clip(), NAMES, **kw)
    x, y = features()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k not in model.saved_state_dict()}
    trained_before = {k: v.clone() for k, v in model.saved_state_dict().items()}
    before = loss_on(model, x, y)
    model.fit_features(x, y, args={**QUICK, "num_train_epochs": 20})
    assert loss_on(model, x, y) < before
    assert model.config.is_fitted and not model.training
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), f"{k} is frozen and must not change"
    assert any(
        not torch.equal(model.saved_state_dict()[k], v) for k, v in trained_before.items() if v.is_floating_point()
    )


@pytest.mark.parametrize("name", ["coop", "clip_adapter"])
def test_resume_from_a_checkpoint_equals_the_straight_run(name, tmp_path):
    cls, kw = CLASSIFIERS[name]
    x, y = features()
    args = {**QUICK, "per_device_train_batch_size": 4}  # 5 steps per pass, 20 in all
    straight = cls.from_clip(clip(), NAMES, **kw)
    straight.fit_features(x, y, args=args)
    first = cls.from_clip(clip(), NAMES, **kw)
    first.fit_features(x, y, args={**args, "output_dir": str(tmp_path), "save_strategy": "steps", "save_steps": 7})
    resumed = cls.from_clip(clip(), NAMES, **kw)
    resumed.fit_features(
        x, y, args={**args, "output_dir": str(tmp_path)}, resume_from_checkpoint=str(tmp_path / "checkpoint-7")
    )
    for k, v in straight.saved_state_dict().items():
        torch.testing.assert_close(resumed.saved_state_dict()[k], v, rtol=0, atol=1e-6 * (v.abs().max().item() + 1))


def test_tip_adapter_without_trained_keys_never_trains():
    model = TipAdapterForImageClassification.from_clip(clip(), NAMES)
    x, y = features(n_per_class=2)
    model.fit_features(x, y)
    assert model.history_ is None  # declared on every model (EvaluationMixin); set only by a run that trains
    torch.testing.assert_close(model.cache_keys, x)  # one view: the keys are the features
    assert model.config.cache_size == 6 and not any(p.requires_grad for p in model.parameters())


def test_extra_features_join_the_training_set_and_the_cache():
    model = TipAdapterForImageClassification.from_clip(clip(), NAMES, train_keys=True)
    x, y = features()
    extra = (features(n_per_class=2, seed=1)[0][:4], torch.tensor([2, 2, 2, 2]))
    model.fit_features(x[y < 2], y[y < 2], extra_features=extra, args=QUICK)
    assert model.config.cache_size == 12 + 4
    assert model.cache_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 4
    with pytest.raises(ValueError, match="index this model's 3 classes"):
        model.fit_features(x, y, extra_features=(extra[0], torch.tensor([0, 1, 2, 3])))
    with pytest.raises(ValueError, match="extra_features must be"):
        model.fit_features(x, y, extra_features=(extra[0][:, :8], extra[1]))


def test_a_class_without_any_sample_warns():
    model = CLIPAdapterForImageClassification.from_clip(clip(), NAMES)
    x, y = features()
    with pytest.warns(UserWarning, match="1 of 3 classes have no training sample"):
        model.fit_features(x[y < 2], y[y < 2], args={"num_train_epochs": 1})


def test_fit_on_a_dataset_of_some_classes_maps_labels_by_name():
    backbone = clip()
    data = tiny_image_dataset(3, 4, class_names=["blue", "red", "purple"])
    model = TipAdapterForImageClassification.from_clip(backbone, NAMES)
    with pytest.raises(ValueError, match="not among this model's"):
        model.fit(data)
    part = select_classes(data, ["blue", "red"])  # ids 0, 1 in the data; 2, 0 in the model
    with pytest.warns(UserWarning, match="no training sample"):
        model.fit(part, views=1)
    assert sorted(model.cache_labels.tolist()) == [0] * 4 + [2] * 4


def test_ship_generator_fits_on_features_and_its_loss_falls():
    backbone = clip()
    generator = SHIPGenerator.from_clip(backbone, NAMES, encoder_hidden_dim=16, bias_hidden_dim=16)
    x, y = features()
    with torch.no_grad():
        before = generator(image_features=x, labels=y).reconstruction_loss.item()
    generator.fit_features(x, y, args={"num_train_epochs": 30, "learning_rate": 1e-2, "seed": 0})
    with torch.no_grad():
        after = generator(image_features=x, labels=y).reconstruction_loss.item()
    assert after < before


def test_more_shots_than_a_class_has_is_refused_before_any_encoding():
    model = CoOpForImageClassification.from_clip(clip(), NAMES)
    with pytest.raises(ValueError, match="shots"):
        model.fit(tiny_image_dataset(3, 4, class_names=NAMES), shots=8)
    assert not model.config.is_fitted


def test_nan_features_are_refused():
    model = CLIPAdapterForImageClassification.from_clip(clip(), NAMES)
    x, y = features()
    x[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.fit_features(x, y)
    with pytest.raises(ValueError, match="NaN"):
        model.fit_features(features()[0], y, extra_features=(x[2:4], y[2:4]))
