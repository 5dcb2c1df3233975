"""Per-method TrainingArguments (issue 26, item 2): each class's defaults are the values the
methods used before the refactor (copied here as literals from the old
`default_training_arguments` of each model, so a changed default fails), a dict of overrides
works, and an unknown override key is refused with a message naming close fields."""

import pytest

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification, CLIPAdapterTrainingArguments
from hf_clipadapt.coop import CoOpForImageClassification, CoOpTrainingArguments
from hf_clipadapt.ship import SHIPGenerator, SHIPTrainingArguments
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification, TipAdapterTrainingArguments
from hf_clipadapt.training import AdaptationTrainingArguments, resolve_training_arguments
from hf_clipadapt.ueo import UEOTrainingArguments

# The settings each method's fit used before the per-method classes (old code, verbatim values).
COOP_OLD = dict(
    optim="sgd",
    learning_rate=2e-3,
    momentum=0.9,
    weight_decay=5e-4,
    lr_scheduler_type="cosine",
    constant_warmup_lr=1e-5,
    constant_warmup_epochs=1,
    per_device_train_batch_size=32,
)
TIP_OLD = dict(
    optim="adamw_torch",
    learning_rate=1e-3,
    adam_epsilon=1e-4,
    weight_decay=0.01,
    lr_scheduler_type="cosine",
    per_device_train_batch_size=256,
)
SHIP_OLD = dict(
    optim="adamw_torch",
    learning_rate=1e-3,
    weight_decay=0.01,
    lr_scheduler_type="constant",
    per_device_train_batch_size=256,
)
UEO_OLD = dict(
    optim="sgd",
    learning_rate=1e-4,
    weight_decay=0.0,
    lr_scheduler_type="cosine",
    warmup_steps=0,
    per_device_train_batch_size=64,
    num_train_epochs=50,
    max_grad_norm=0.0,
    trade=1.0,
    no_weight=False,
    oracle=False,
    augment=True,
    weights_from="cosine",
    log_epsilon=1e-5,
)


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def _value(args, key):
    value = getattr(args, key)
    return str(value).split(".")[-1].lower() if key in ("optim", "lr_scheduler_type") else value


@pytest.mark.parametrize(
    "cls,old",
    [
        (CoOpTrainingArguments, COOP_OLD),
        (CLIPAdapterTrainingArguments, COOP_OLD),
        (TipAdapterTrainingArguments, TIP_OLD),
        (SHIPTrainingArguments, SHIP_OLD),
        (UEOTrainingArguments, UEO_OLD),
    ],
)
def test_defaults_are_the_values_the_old_code_used(cls, old):
    args = cls()
    assert {k: _value(args, k) for k in old} == old
    assert issubclass(cls, AdaptationTrainingArguments)


@pytest.mark.parametrize("shots,views,epochs", [(1, 10, 50), (4, 10, 100), (16, 10, 200), (16, 1, 200)])
@pytest.mark.parametrize("model_class", [CoOpForImageClassification, CLIPAdapterForImageClassification])
def test_coop_schedule_resolves_as_before(clip, model_class, shots, views, epochs):
    model = model_class.from_clip(clip, ["cat", "dog"], shots=shots, views=views)
    args = model.training_arguments(num_samples=1000, seed=3)
    assert isinstance(args, model.training_arguments_class)
    assert {k: _value(args, k) for k in COOP_OLD} == COOP_OLD
    assert (args.num_train_epochs, args.schedule_epochs, args.seed) == (max(1, round(epochs / views)), epochs, 3)


def test_tip_and_ship_epochs_resolve_as_before(clip):
    tip = TipAdapterForImageClassification.from_clip(clip, ["cat", "dog"], views=10, preset="eurosat")
    args = tip.training_arguments(num_samples=1000, seed=0)
    assert {k: _value(args, k) for k in TIP_OLD} == TIP_OLD and args.num_train_epochs == 10  # 100 epochs / 10 views
    assert (
        TipAdapterForImageClassification.from_clip(clip, ["cat", "dog"], views=10)
        .training_arguments(num_samples=1000, seed=0)
        .num_train_epochs
        == 2
    )  # 20 epochs / 10 views
    ship = SHIPGenerator.from_clip(clip, ["cat", "dog"], views=10)
    args = ship.training_arguments(num_samples=1000, seed=0)
    assert {k: _value(args, k) for k in SHIP_OLD} == SHIP_OLD and args.num_train_epochs == 5  # 50 epochs / 10 views


def test_a_dict_of_overrides_and_a_preset(clip):
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"], shots=16, views=10)
    args = model.training_arguments(num_samples=1000, seed=0, args={"learning_rate": 0.5, "epochs": 50})
    assert (args.learning_rate, args.momentum, args.num_train_epochs, args.schedule_epochs) == (0.5, 0.9, 5, 50)
    preset = CoOpTrainingArguments.from_preset("imagenet")
    assert (preset.epochs, preset.preset) == (50, "imagenet")
    args = model.training_arguments(num_samples=1000, seed=0, args=preset)  # an instance: passes filled in
    assert (args.num_train_epochs, args.schedule_epochs) == (5, 50) and preset.num_train_epochs is None
    assert TipAdapterTrainingArguments.from_preset("eurosat").epochs == 100
    ueo = resolve_training_arguments(None, {"trade": 3.0}, arguments_class=UEOTrainingArguments, num_samples=10)
    assert (ueo.trade, ueo.per_device_train_batch_size, ueo.learning_rate) == (3.0, 10, 1e-4)


def test_an_unknown_override_key_is_refused_with_close_names(clip):
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"], shots=16)
    with pytest.raises(ValueError, match=r"'learnig_rate' \(did you mean 'learning_rate'"):
        model.training_arguments(num_samples=10, seed=0, args={"learnig_rate": 0.1})
    with pytest.raises(ValueError, match="no UEOTrainingArguments field: 'trades'"):
        resolve_training_arguments(None, {"trades": 2.0}, arguments_class=UEOTrainingArguments)
    with pytest.raises(TypeError, match="args must be a CoOpTrainingArguments or a dict"):
        model.training_arguments(num_samples=10, seed=0, args=[("learning_rate", 0.1)])
    with pytest.raises(ValueError, match="unknown preset 'imagenett'"):
        CoOpTrainingArguments.from_preset("imagenett")


def test_craft_dict_args_are_checked_by_the_same_helper():
    from hf_clipadapt.craft import CraFTTrainingArguments
    from hf_clipadapt.training import check_overrides

    assert check_overrides({"budget": 10}, CraFTTrainingArguments) == {"budget": 10}
    with pytest.raises(ValueError, match=r"'budgets' \(did you mean 'budget'"):
        check_overrides({"budgets": 10}, CraFTTrainingArguments)
