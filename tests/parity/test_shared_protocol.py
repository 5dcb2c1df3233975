"""Parity of the protocol shared by CoOp, CLIP-Adapter, Tip-Adapter(-F) and SHIP with
the authors' code: class names with "_", the base/new split by label id, and the
learning-rate schedule each `fit` builds (epochs and warm-up per shot count).

References, re-derived from the official code (never imported):
* "_" -> " " before tokenising: KaiyangZhou/CoOp `trainers/coop.py` L98,
  gaopengcuhk/CLIP-Adapter `clip_adapter.py` L81, gaopengcuhk/Tip-Adapter `utils.py` L24,
  mrflogs/SHIP `main_coop_vae.py` L85 and L256.
* base = the first ceil(n/2) sorted label ids: KaiyangZhou/CoOp
  `datasets/oxford_pets.py` `subsample_classes` (labels = sorted set; m = ceil(n/2)).
* epochs by shots: KaiyangZhou/CoOp `COOP.md` L13 and L18-22 (1 shot `*_ep50`, 2 and 4
  shots `*_ep100`, 8 and 16 shots the 200-epoch configs; ImageNet `*_ep50` always).
* warm-up: `configs/trainers/CoOp/vit_b16.yaml` L15-22 (SGD, lr 2e-3, cosine,
  WARMUP_EPOCH 1, constant, 1e-5) run by KaiyangZhou/Dassl.pytorch
  `dassl/optim/lr_scheduler.py` L27-54 (ConstantWarmupScheduler) and L128-141, stepped
  once per epoch (CoOp `trainers/coop.py` L281-282).
"""

import math

import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone, PromptLearner, SoftPromptTextEncoder
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import base_new_class_split
from hf_clipadapt.ship import SHIPGenerator
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification
from hf_clipadapt.training import AdaptationTrainer

UNDERSCORED = ["golden_retriever", "sea_lion", "cat"]
SPACED = ["golden retriever", "sea lion", "cat"]


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


# ---------------------------------------------------------------------- "_" in class names
def test_tokenizer_reads_underscore_as_its_own_token(clip):
    """The premise: without the replacement the prompts differ (else the tests below prove nothing)."""
    a = clip.tokenize(["golden_retriever"])["input_ids"]
    b = clip.tokenize(["golden retriever"])["input_ids"]
    assert a.shape != b.shape or not torch.equal(a, b)


@pytest.mark.parametrize("cls", [TipAdapterForImageClassification, CLIPAdapterForImageClassification])
def test_zero_shot_text_path_reads_underscore_as_space(clip, cls):
    under = cls.from_clip(clip, UNDERSCORED, ["a photo of a {}."]).text_weights
    spaced = cls.from_clip(clip, SPACED, ["a photo of a {}."]).text_weights
    torch.testing.assert_close(under, spaced, rtol=0, atol=0)
    assert cls.from_clip(clip, UNDERSCORED).config.id2label[0] == "golden_retriever"  # labels keep their spelling


def test_coop_prompts_read_underscore_as_space(clip):
    under = CoOpForImageClassification.from_clip(clip, UNDERSCORED, seed=0).class_text_features()
    spaced = CoOpForImageClassification.from_clip(clip, SPACED, seed=0).class_text_features()
    torch.testing.assert_close(under, spaced, rtol=0, atol=0)
    # The random 16-token context of CoOp's headline setting goes through the same path.
    g = torch.Generator().manual_seed(0)
    ctx = 0.02 * torch.randn(16, SoftPromptTextEncoder(clip).width, generator=g)
    enc = SoftPromptTextEncoder(clip)
    torch.testing.assert_close(enc(ctx, UNDERSCORED), enc(ctx, SPACED), rtol=0, atol=0)


def test_prompt_learner_and_ship_decoder_read_underscore_as_space(clip):
    under = PromptLearner(clip, UNDERSCORED)()
    spaced = PromptLearner(clip, SPACED)()
    torch.testing.assert_close(under, spaced, rtol=0, atol=0)
    ship = SHIPGenerator.from_clip(clip, ["cat", "dog"], encoder_hidden_dim=8, bias_hidden_dim=8)
    z = torch.randn(3, ship.config.latent_dim, generator=torch.Generator().manual_seed(1))
    rows = torch.arange(3)
    got = ship.decode(z, ship.class_tokens(UNDERSCORED), rows)
    want = ship.decode(z, ship.class_tokens(SPACED), rows)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    f_under, _ = ship.generate(UNDERSCORED, n_per_class=2, seed=0)
    f_spaced, _ = ship.generate(SPACED, n_per_class=2, seed=0)
    torch.testing.assert_close(f_under, f_spaced, rtol=0, atol=0)


# ---------------------------------------------------------------------- base/new split
def coop_subsample_classes(label_ids):
    """CoOp's `subsample_classes(..., subsample="base"/"new")`: sorted ids, m = ceil(n/2)."""
    labels = sorted(set(label_ids))
    m = math.ceil(len(labels) / 2)
    return labels[:m], labels[m:]


def test_base_new_split_is_by_label_id_not_by_sorted_name():
    names = ["zebra", "apple", "mango", "kiwi", "banana"]  # label id = position; sorted names differ
    base_ids, new_ids = coop_subsample_classes(range(len(names)))
    base, new = base_new_class_split(names)
    assert base == [names[i] for i in base_ids] == ["zebra", "apple", "mango"]
    assert new == [names[i] for i in new_ids]


# ---------------------------------------------------------------------- schedules
def dassl_epoch_rates(max_epoch, lr=2e-3, warmup_epoch=1, cons_lr=1e-5):
    """The rate of each epoch under Dassl's build_lr_scheduler (cosine + constant warm-up,
    WARMUP_RECOUNT=True), simulated step by step like its _LRScheduler: the wrapper's own
    counter runs the warm-up; afterwards each step advances the cosine successor
    (CosineAnnealingLR, T_max = max_epoch) by one, in closed form
    eta_t = lr·(1 + cos(pi·t/T_max))/2 (torch's CosineAnnealingLR with eta_min = 0)."""
    last_epoch, successor_t, rates = 0, 0, []
    for _ in range(max_epoch):
        in_warmup = last_epoch < warmup_epoch
        rates.append(cons_lr if in_warmup else lr * (1 + math.cos(math.pi * successor_t / max_epoch)) / 2)
        # step() at the end of the epoch (trainers/coop.py L281-282)
        if last_epoch >= warmup_epoch:
            successor_t += 1
        else:
            last_epoch += 1
    return rates


@pytest.mark.parametrize("shots,epochs", [(1, 50), (2, 100), (4, 100), (8, 200), (16, 200)])
@pytest.mark.parametrize("cls", [CoOpForImageClassification, CLIPAdapterForImageClassification])
def test_fit_schedule_by_shot_count(clip, cls, shots, epochs):
    model = cls.from_clip(clip, ["cat", "dog"], shots=shots, views=10)
    args = model.training_arguments(num_samples=64 * shots, seed=0)
    assert args.num_train_epochs == round(epochs / 10)  # passes over the 10 cached views
    assert args.schedule_epochs == epochs
    assert (args.constant_warmup_lr, args.constant_warmup_epochs) == (1e-5, 1)
    assert (str(args.optim).split(".")[-1].lower(), args.learning_rate, args.weight_decay) == ("sgd", 2e-3, 5e-4)
    assert "momentum=0.9" in args.optim_args
    assert args.per_device_train_batch_size == 32


def test_imagenet_preset_trains_50_epochs_at_every_shot_count(clip):
    for shots in (1, 4, 16):
        model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"], shots=shots, views=10, preset="imagenet")
        assert model.training_arguments(num_samples=64, seed=0).schedule_epochs == 50


@pytest.mark.parametrize("views", [1, 10])
def test_scheduler_rates_follow_dassl_epoch_by_epoch(clip, views):
    """Every optimizer step runs at the rate Dassl gives the epoch of fresh images it stands for."""
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"], shots=1, views=views)
    n = 64  # 32 images x 2 classes -> 2 steps of 32 per pass
    args = model.training_arguments(num_samples=n, seed=0)
    steps_per_pass = math.ceil(n / args.per_device_train_batch_size)
    total = steps_per_pass * int(args.num_train_epochs)
    trainer = AdaptationTrainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=total)
    got = []
    for _ in range(total):
        got.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    epoch_rates = dassl_epoch_rates(50)
    want = [epoch_rates[s * 50 // total] for s in range(total)]
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0
    )
    assert got[0] == 1e-5
    if views == 1:  # one pass per epoch: epoch 1 runs at the full rate; with 10 views a step stands for 5 epochs
        assert max(got) == pytest.approx(2e-3, rel=1e-12)


def test_overridden_passes_keep_the_warmup_one_epoch_long(clip):
    model = CoOpForImageClassification.from_clip(clip, ["cat", "dog"], shots=16, views=4)
    args = model.training_arguments(num_samples=64, seed=0, args={"num_train_epochs": 5})
    assert args.schedule_epochs == 20  # 5 passes over 4 views stand for 20 epochs


def test_dassl_reference_on_a_hand_checked_case():
    """Guard on the reference itself: epoch 0 warm-up, epoch 1 the full rate, then cosine from t = 1."""
    rates = dassl_epoch_rates(4)
    expected = [1e-5, 2e-3, 2e-3 * (1 + math.cos(math.pi / 4)) / 2, 2e-3 * (1 + math.cos(math.pi / 2)) / 2]
    assert rates == pytest.approx(expected, rel=1e-15)


def test_constant_warmup_needs_the_cosine_schedule():
    from hf_clipadapt.training import AdaptationTrainingArguments

    with pytest.raises(ValueError, match="cosine"):
        AdaptationTrainingArguments(constant_warmup_lr=1e-5, lr_scheduler_type="linear")
