"""TZSL's training settings moved from TZSLConfig to TZSLTrainingArguments (issue 26, item 2):
the defaults and presets are the values the config held, an old config.json that still carries
them loads with a FutureWarning naming the new place and fit uses its values, and fit's args
are checked."""

import json

import pytest

from hf_clipadapt.tzsl import PRESETS, TZSLConfig, TZSLModel, TZSLTrainingArguments

# TZSLConfig's training defaults before the move (old configuration_tzsl.py, verbatim values).
OLD_DEFAULTS = dict(
    epochs=100,
    steps_per_epoch=None,
    batch_size=64,
    critic_iters=5,
    gp_weight=10.0,
    adaptive_gp=True,
    gan_weight=10.0,
    decoder_weight=0.01,
    lr=1e-4,
    decoder_lr=1e-4,
    feedback_lr=1e-5,
    feedback_train_weight=1.0,
    decoder_pretrain_epochs=20,
    syn_num=300,
    cls_lr=1e-3,
    cls_epochs=25,
    cls_batch_size=128,
)
NEW_NAME = {"epochs": "num_train_epochs", "lr": "learning_rate"}
SMALL = dict(
    feature_dim=16,
    attribute_dim=5,
    num_classes=11,
    hidden_dim=16,
    decoder_hidden_dim=8,
    seen_classes=list(range(8)),
    unseen_classes=[8, 9, 10],
)


def test_defaults_are_the_values_the_config_held():
    args = TZSLTrainingArguments()
    assert {k: getattr(args, NEW_NAME.get(k, k)) for k in OLD_DEFAULTS} == OLD_DEFAULTS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_their_training_values(name):
    args = TZSLTrainingArguments.from_preset(name)
    old = {k: v for k, v in PRESETS[name].items() if k in OLD_DEFAULTS}
    assert old and {k: getattr(args, NEW_NAME.get(k, k)) for k in old} == old
    assert args.preset == name
    config = TZSLConfig.from_preset(name).to_dict()
    assert not set(OLD_DEFAULTS) & set(config)  # the config no longer holds (nor writes) them


def test_an_old_config_json_loads_with_a_warning_and_fit_uses_its_values(tmp_path):
    written = TZSLConfig(**SMALL).to_dict()
    written.update(epochs=7, lr=2e-3, syn_num=11, critic_iters=2)  # what an old save_pretrained wrote
    (tmp_path / "config.json").write_text(json.dumps(written))
    with pytest.warns(FutureWarning, match=r"TZSLTrainingArguments \(epochs -> num_train_epochs"):
        config = TZSLConfig.from_pretrained(tmp_path)
    assert not hasattr(config, "epochs") and "syn_num" not in config.to_dict()
    args = TZSLModel(config).training_arguments(seed=3)
    assert (args.num_train_epochs, args.learning_rate, args.syn_num, args.critic_iters, args.seed) == (
        7,
        2e-3,
        11,
        2,
        3,
    )
    assert args.batch_size == 64  # what the old config did not set keeps its default
    assert TZSLModel(config).training_arguments(args={"syn_num": 5}).syn_num == 5  # args win


def test_fit_args_start_from_the_preset_and_refuse_unknown_keys():
    model = TZSLModel(TZSLConfig.from_preset("fast", **SMALL))
    args = model.training_arguments(args={"cls_epochs": 3})
    assert (args.num_train_epochs, args.steps_per_epoch, args.cls_epochs, args.cls_lr) == (4, 200, 3, 1e-3)
    with pytest.warns(FutureWarning, match=r"\['epochs'\] are now named \['num_train_epochs'\]"):
        assert model.training_arguments(args={"epochs": 2}).num_train_epochs == 2
    with pytest.raises(ValueError, match=r"'syn_nums' \(did you mean 'syn_num'"):
        model.training_arguments(args={"syn_nums": 2})
    given = TZSLTrainingArguments(cls_epochs=1)
    assert model.training_arguments(args=given) is given
    with pytest.raises(ValueError, match="syn_num must be a positive integer"):
        TZSLTrainingArguments(syn_num=0)
