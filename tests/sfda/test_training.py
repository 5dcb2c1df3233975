"""Both stages end to end on a tiny Swin; distributed == single process; checkpoint resume."""

import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator

from hf_clipadapt.testing_utils import run_distributed

from hf_clipadapt.sfda import evaluate, fit
from hf_clipadapt.testing_utils import tiny_image_dataset


def _setup():
    # built inside each process (debug_launcher forks), the same way everywhere
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import pixels, tiny_sfda_model

    return tiny_sfda_model(seed=0), tiny_image_dataset(num_classes=3, per_class=4, size=16), pixels


def _one_step(out_file: str, accumulation: int):
    model, data, pixels = _setup()
    acc = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    assert acc.num_processes == (2 if accumulation == 1 else 1)
    fit(model, data, stage="source", transform=pixels, accelerator=acc, batch_size=8, max_steps=1, seed=5)
    if acc.is_main_process:
        torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, out_file)


def _two_process_step(out_file):
    _one_step(out_file, accumulation=1)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    # 2 ranks × 4 samples vs 1 rank × 2 accumulated micro-batches of 4: the samplers hand
    # out the same global batch, DDP averages the two ranks' gradients as accumulation
    # averages the micro-batches, and BatchNorm sees the same 4-sample groups.
    two, one = str(tmp_path / "two.pt"), str(tmp_path / "one.pt")
    run_distributed(_two_process_step, args=(two,), num_processes=2)
    _one_step(one, accumulation=2)
    p2, p1 = torch.load(two), torch.load(one)
    model, _, _ = _setup()
    start = dict(model.named_parameters())
    assert any(not torch.allclose(p1[k], start[k]) for k in p1)  # the step changed the weights
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], atol=1e-6, rtol=1e-5, msg=k)


def test_source_then_target_stages_run_and_freeze_the_classifier(make_model, tiny_dataset, to_pixels):
    model = make_model(source_epochs=2, target_epochs=2, strategy="shot", model_selection="im_loss")
    out = fit(model, tiny_dataset, stage="source", transform=to_pixels)
    assert out["global_step"] == 2 * 3 and [h["epoch"] for h in out["history"]] == [1, 2]
    classifier = model.head.classifier.weight.detach().clone()
    bottleneck = model.head.bottleneck.weight.detach().clone()
    out = fit(model, tiny_dataset.remove_columns("label"), stage="target", transform=to_pixels)
    torch.testing.assert_close(model.head.classifier.weight, classifier)  # frozen in stage 2
    assert out["selected_epoch"] in (0, 1, 2)
    assert [h["epoch"] for h in out["history"] if "selection_score" in h] == [0, 1, 2]
    if out["selected_epoch"] > 0:
        assert not torch.allclose(model.head.bottleneck.weight, bottleneck)
    scores = evaluate(model, tiny_dataset, transform=to_pixels)
    assert set(scores) == {"accuracy", "top3_accuracy", "per_class_accuracy"}
    assert scores["top3_accuracy"] == 100.0  # 3 classes


def test_ema_teacher_is_copied_when_the_term_switches_on(make_model, tiny_dataset, to_pixels, monkeypatch):
    from hf_clipadapt.sfda import training

    seen = []
    original = training._source_loss

    def spy(cfg, logits, labels, teacher, pixel_values, progress):
        if progress >= cfg.ema_start:
            student = dict(model.named_parameters())
            seen.append(all(torch.equal(p, student[k]) for k, p in teacher.named_parameters()))
        return original(cfg, logits, labels, teacher, pixel_values, progress)

    monkeypatch.setattr(training, "_source_loss", spy)
    model = make_model()  # default ema_teacher_init="copy_at_ema_start"
    fit(model, tiny_dataset, stage="source", transform=to_pixels, epochs=2)  # steps at progress 0, 1/6, ..., 5/6
    # the first step at >= 40% (progress 3/6) sees a fresh copy; later steps a lagging teacher
    assert seen == [True, False, False]
    seen.clear()
    model = make_model(ema_teacher_init="copy_at_start")
    fit(model, tiny_dataset, stage="source", transform=to_pixels, epochs=2)
    assert seen and not seen[0]  # the initial-model copy, averaged once


def test_universal_evaluation_reports_h_score(make_model, tiny_dataset, to_pixels):
    model = make_model(num_labels=2)  # class 2 of the data is target-private
    scores = evaluate(model, tiny_dataset, transform=to_pixels)
    assert set(scores) >= {"h_score", "known_accuracy", "unknown_accuracy"}
    assert 0.0 <= scores["h_score"] <= 100.0


def test_checkpoint_resume_matches_an_uninterrupted_run(make_model, swin_config, tiny_dataset, to_pixels):
    # stochastic depth draws from the global RNG: the resumed run must see the same draws
    swin_config.drop_path_rate = 0.5
    make = lambda seed: make_model(seed=seed, backbone_config=swin_config)  # noqa: E731
    # 6 steps: the EMA teacher is copied from the student at step 3 (40%), checkpoint at step 4
    kwargs = dict(stage="source", transform=to_pixels, epochs=2, seed=1)
    with tempfile.TemporaryDirectory() as ckpt:
        full = make(0)
        fit(full, tiny_dataset, checkpoint_dir=ckpt, checkpoint_every=4, **kwargs)  # 6 steps, saves after 4
        saved = sorted(p.name for p in Path(ckpt).iterdir())
        assert saved == ["step_0000004"]  # atomic: no *.tmp left behind
        resumed = make(123)  # different init: everything must come from the checkpoint
        out = fit(resumed, tiny_dataset, resume_from=Path(ckpt) / "step_0000004", **kwargs)
    assert out["global_step"] == 6
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
