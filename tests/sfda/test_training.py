"""Both stages end to end on a tiny Swin, on the shared training path (SFDATrainer):
distributed == single process; checkpoint resume; the EMA teacher; old configs."""

import sys
import warnings
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from hf_clipadapt.sfda import SFDAConfig, SFDATrainer, SFDATrainingArguments, evaluate, fit
from hf_clipadapt.testing_utils import run_distributed, tiny_image_dataset


def _setup():
    # built inside each process (debug_launcher forks), the same way everywhere
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import pixels, tiny_torch_sfda_model

    return tiny_torch_sfda_model(seed=0), tiny_image_dataset(num_classes=3, per_class=4, size=16), pixels


def _one_step(out_file: str, accumulation: int):
    torch.set_num_threads(1)
    model, data, pixels = _setup()
    acc = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    assert acc.num_processes == (2 if accumulation == 1 else 1)
    # 2 steps: DDP without find_unused_parameters fails at the second one ("Expected to have
    # finished reduction in the prior iteration"), as EfficientNet's unused `_fc` head did. No EMA
    # teacher: it would start at step 2 (of 2) from BatchNorm running statistics, which DDP takes
    # from rank 0 alone, so they legitimately differ from one process's
    fit(
        model,
        data,
        stage="source",
        transform=pixels,
        accelerator=acc,
        batch_size=8,
        max_steps=2,
        seed=5,
        ema_weight=0.0,
    )
    if acc.is_main_process:
        torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, out_file)


def _two_process_step(out_file):
    _one_step(out_file, accumulation=1)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    # 2 ranks × 4 samples vs 1 rank × 2 accumulated micro-batches of 4: the samplers hand
    # out the same global batch, DDP averages the two ranks' gradients as accumulation
    # averages the micro-batches, and BatchNorm sees the same 4-sample groups. The backbone
    # carries a trainable head outside the loss, which DDP must tolerate.
    two, one = str(tmp_path / "two.pt"), str(tmp_path / "one.pt")
    run_distributed(_two_process_step, args=(two,), num_processes=2)
    _one_step(one, accumulation=2)
    p2, p1 = torch.load(two), torch.load(one)
    model, _, _ = _setup()
    start = dict(model.named_parameters())
    assert any(not torch.allclose(p1[k], start[k]) for k in p1)  # the steps changed the weights
    assert torch.equal(p2["backbone.module._fc.weight"], start["backbone.module._fc.weight"])
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], atol=1e-6, rtol=1e-5, msg=k)


def test_source_then_target_stages_run_and_freeze_the_classifier(make_model, tiny_dataset, to_pixels):
    model = make_model(strategy="shot")
    out = fit(model, tiny_dataset, stage="source", transform=to_pixels, epochs=2, batch_size=4)
    assert out["global_step"] == 2 * 3 and [h["epoch"] for h in out["history"]] == [1, 2]
    classifier = model.head.classifier.weight.detach().clone()
    bottleneck = model.head.bottleneck.weight.detach().clone()
    args = SFDATrainingArguments(stage="target", num_train_epochs=2, batch_size=4, model_selection="im_loss")
    out = fit(model, tiny_dataset.remove_columns("label"), stage="target", transform=to_pixels, args=args)
    torch.testing.assert_close(model.head.classifier.weight, classifier)  # frozen in stage 2
    assert model.head.classifier.weight.requires_grad  # and trainable again afterwards
    assert out["selected_epoch"] in (0, 1, 2) and model.config.model_selection == "im_loss"
    assert [h["epoch"] for h in out["history"] if "selection_score" in h] == [0, 1, 2]
    if out["selected_epoch"] > 0:
        assert not torch.allclose(model.head.bottleneck.weight, bottleneck)
    scores = evaluate(model, tiny_dataset, transform=to_pixels)
    assert set(scores) == {"accuracy", "top3_accuracy", "per_class_accuracy"}
    assert scores["top3_accuracy"] == 100.0  # 3 classes


def test_ema_teacher_is_copied_when_the_term_switches_on(make_model, tiny_dataset, to_pixels, monkeypatch):
    seen = []
    original = SFDATrainer._source_loss

    def spy(self, logits, labels, pixel_values):
        if self.progress >= self.args.ema_start:
            student = dict(self.model.named_parameters())
            seen.append(all(torch.equal(p, student[k]) for k, p in self.teacher.named_parameters()))
        return original(self, logits, labels, pixel_values)

    monkeypatch.setattr(SFDATrainer, "_source_loss", spy)
    kwargs = dict(stage="source", transform=to_pixels, epochs=2, batch_size=4)  # progress 0, 1/6, ..., 5/6
    fit(make_model(), tiny_dataset, **kwargs)  # default ema_teacher_init="copy_at_ema_start"
    # the first step at >= 40% (progress 3/6) sees a fresh copy; later steps a lagging teacher
    assert seen == [True, False, False]
    seen.clear()
    fit(make_model(), tiny_dataset, ema_teacher_init="copy_at_start", **kwargs)
    assert seen and not seen[0]  # the initial-model copy, averaged once


def test_universal_evaluation_reports_h_score(make_model, tiny_dataset, to_pixels):
    model = make_model(num_labels=2)  # class 2 of the data is target-private
    scores = evaluate(model, tiny_dataset, transform=to_pixels)
    assert set(scores) >= {"h_score", "known_accuracy", "unknown_accuracy"}
    assert 0.0 <= scores["h_score"] <= 100.0


@pytest.mark.parametrize("stage", ["source", "target"])
def test_checkpoint_resume_matches_an_uninterrupted_run(
    stage, make_model, swin_config, tiny_dataset, to_pixels, tmp_path
):
    # stochastic depth draws from the global RNG: the resumed run must see the same draws
    swin_config.drop_path_rate = 0.5
    make = lambda seed: make_model(seed=seed, backbone_config=swin_config, strategy="shot")  # noqa: E731
    # 6 steps: the EMA teacher is copied from the student at step 3 (40%), checkpoint at step 4 (mid-epoch);
    # the target stage's pseudo-labels of epoch 2 come from the checkpoint, not from a new pass
    data = tiny_dataset if stage == "source" else tiny_dataset.remove_columns("label")
    kwargs = dict(stage=stage, transform=to_pixels, epochs=2, seed=1, batch_size=4)
    full = make(0)
    fit(full, data, checkpoint_dir=tmp_path, checkpoint_every=4, **kwargs)  # 6 steps, saves after 4 and at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]
    assert (tmp_path / "checkpoint-4" / "sfda_state.pt").is_file()
    resumed = make(123)  # different init: everything must come from the checkpoint
    out = fit(resumed, data, resume_from=tmp_path / "checkpoint-4", **kwargs)
    assert out["global_step"] == 6
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_config_with_the_old_training_settings_loads_and_sets_fit_defaults(
    make_model, tiny_dataset, to_pixels, tmp_path
):
    import hf_clipadapt.sfda.configuration_sfda as C

    C._warned_legacy = False
    with pytest.warns(FutureWarning, match="no longer holds training settings"):
        model = make_model(source_epochs=1, target_epochs=3, batch_size=4, ema_weight=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process
        SFDAConfig(backbone=None, source_epochs=2)
    out = fit(model, tiny_dataset, stage="source", transform=to_pixels)
    assert out["global_step"] == 3  # 1 epoch of 12 samples in batches of 4: the old keys are fit's defaults
    model.save_pretrained(tmp_path)
    saved = (tmp_path / "config.json").read_text()
    assert "source_epochs" not in saved and "ema_weight" not in saved  # not written again
