"""UEO training through the shared Trainer: fixed weights, resume, 2 processes, bad input."""

import io

import pytest
import torch
from datasets import Dataset, Features, Image

from hf_clipadapt.testing_utils import assert_close_scaled, run_distributed, tiny_image_dataset
from hf_clipadapt.ueo import UEOForImageClassification, UEOTrainer
from hf_clipadapt.ueo.training import WEIGHTS_FILE, CheckedImages, zero_shot_pass

from .helpers import NAMES, backbone, unlabelled
from .ueo_distributed import one_step, two_processes

ARGS = dict(per_device_train_batch_size=4, num_train_epochs=2, learning_rate=0.1, logging_steps=1)


def trained(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class RecordingTrainer(UEOTrainer):
    seen: list = []

    def compute_loss(self, model, inputs, *args, **kwargs):
        index = inputs["sample_index"].tolist()
        RecordingTrainer.seen.append((int(self.state.epoch), index, self.sample_weights[index].clone()))
        return super().compute_loss(model, inputs, *args, **kwargs)


def test_fit_trains_with_weights_fixed_at_the_initial_zero_shot_prediction():
    data = unlabelled()
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    start = trained(model)
    expected = zero_shot_pass(model, CheckedImages(data))
    RecordingTrainer.seen = []
    model.fit(data, args=ARGS, trainer_class=RecordingTrainer)
    assert model.config.is_fitted and model.config.objective == "ueo" and model.config.num_train_images == 9
    assert all(not torch.equal(v, start[k]) for k, v in trained(model).items())  # every trained tensor moved
    epochs = {e for e, _, _ in RecordingTrainer.seen}
    assert epochs == {0, 1}  # 2 epochs of 3 batches
    for _, index, weights in RecordingTrainer.seen:  # the same weight for an image in every epoch
        torch.testing.assert_close(weights, expected[index], rtol=0, atol=0)
    assert torch.equal(model.sample_weights_, expected)
    assert expected.std() > 0  # not uniform, though nearly (unscaled cosines, the official default)


def test_no_weight_is_information_maximisation_and_oracle_reads_labels():
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    model.fit(unlabelled(), args={**ARGS, "no_weight": True})
    assert model.config.objective == "information_maximization" and model.sample_weights_ is None
    data = tiny_image_dataset(4, 2, class_names=[*NAMES, "black"])  # "black" is not a known class
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    model.fit(data, args={**ARGS, "oracle": True})
    known = torch.tensor([label < 3 for label in data["label"]])
    torch.testing.assert_close(model.sample_weights_, known.float() + 1e-3)


def test_labels_in_the_unlabelled_set_are_ignored_with_a_warning():
    labelled = tiny_image_dataset(3, 3)
    shuffled = labelled.map(lambda row, i: {"label": (row["label"] + i) % 3}, with_indices=True)
    results = []
    for data in (labelled, shuffled, labelled.remove_columns("label")):
        model = UEOForImageClassification.from_clip(backbone(), NAMES)
        if "label" in data.column_names:
            with pytest.warns(UserWarning, match="ignores it"):
                model.fit(data, args=ARGS)
        else:
            model.fit(data, args=ARGS)
        results.append(trained(model))
    for other in results[1:]:
        assert all(torch.equal(other[k], results[0][k]) for k in results[0])


def test_resume_equals_the_uninterrupted_run(tmp_path):
    common = dict(ARGS, save_strategy="epoch", momentum=0.9, optim="sgd")
    full = UEOForImageClassification.from_clip(backbone(), NAMES)
    full.fit(unlabelled(), args=dict(common, output_dir=str(tmp_path / "full")))
    checkpoint = tmp_path / "full" / "checkpoint-3"  # after epoch 1 of 2
    assert (checkpoint / WEIGHTS_FILE).is_file()
    resumed = UEOForImageClassification.from_clip(backbone(), NAMES)
    with torch.no_grad():  # a different start: every trained tensor must come from the checkpoint
        for p in trained(resumed):
            dict(resumed.named_parameters())[p].add_(1.0)
    resumed.fit(
        unlabelled(), args=dict(common, output_dir=str(tmp_path / "resumed")), resume_from_checkpoint=str(checkpoint)
    )
    assert torch.equal(resumed.sample_weights_, full.sample_weights_)  # from the checkpoint, not recomputed
    for name, value in trained(full).items():
        assert torch.equal(trained(resumed)[name], value), name


def test_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    two, one = str(tmp_path / "two.pt"), str(tmp_path / "one.pt")
    run_distributed(two_processes, args=(two,), num_processes=2)
    one_step(one, 1)
    p2, p1 = torch.load(two), torch.load(one)
    start = trained(UEOForImageClassification.from_clip(backbone(), ["red", "green", "blue", "white"]))
    assert any(not torch.equal(p1["params"][k], start[k]) for k in start)
    for name in p1["params"]:
        assert_close_scaled(p2["params"][name] - start[name], p1["params"][name] - start[name], rtol=1e-4, msg=name)
    loss = lambda h: [r["loss"] for r in h if "loss" in r]  # noqa: E731
    assert loss(p2["history"]) == pytest.approx(loss(p1["history"]), rel=1e-4)


def test_defaults_are_the_official_settings_and_overridable():
    from hf_clipadapt.ueo.training import training_arguments

    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    d = model.default_training_arguments()
    assert (d["optim"], d["learning_rate"], d["lr_scheduler_type"], d["per_device_train_batch_size"]) == (
        "sgd",
        1e-4,
        "cosine",
        64,
    )
    args = training_arguments(1000, 0, {"learning_rate": 0.5})
    assert args.learning_rate == 0.5 and args.per_device_train_batch_size == 64 and args.weight_decay == 0.0
    assert training_arguments(10, 0).per_device_train_batch_size == 10  # never more than the data


def test_training_does_not_clip_gradients_as_the_official_code():
    """The Trainer clips at max_grad_norm=1.0 unless told otherwise; the official code
    (tim-learn/UEO demo.py lines 487-490) steps the raw gradient. One SGD step on the whole
    set, with a gradient norm well over 1, must equal w − lr·g."""
    from hf_clipadapt.ueo import ueo_loss
    from hf_clipadapt.ueo.training import UnlabelledViews, training_arguments

    assert training_arguments(10, 0).max_grad_norm == 0
    data, lr, trade = unlabelled(), 1e-3, 50.0
    reference = UEOForImageClassification.from_clip(backbone(), NAMES)
    images = CheckedImages(data)
    weights = zero_shot_pass(reference, images)
    views = UnlabelledViews(images, reference.backbone.image_transform())
    pv = torch.stack([views[i]["pixel_values"] for i in range(len(views))])
    ueo_loss(reference(pixel_values=pv).logits, weights, trade).backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.requires_grad}
    assert torch.cat([g.flatten() for g in grads.values()]).norm() > 3  # clipping at 1 would shrink the step 3x+
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    start = trained(model)
    model.fit(
        data,
        args=dict(
            per_device_train_batch_size=9,
            max_steps=1,
            learning_rate=lr,
            lr_scheduler_type="constant",
            augment=False,
            trade=trade,
        ),
    )
    for name, value in trained(model).items():
        assert_close_scaled(value - start[name], -lr * grads[name], rtol=1e-3, msg=name)


def test_bad_unlabelled_sets():
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    with pytest.raises(ValueError, match="no image column 'image'"):
        model.fit(Dataset.from_dict({"text": ["a", "b"]}), args=ARGS)
    with pytest.raises(ValueError, match="no images"):
        model.fit(unlabelled().select([]), args=ARGS)
    with pytest.raises(ValueError, match="oracle=True reads"):
        model.fit(unlabelled(), args={**ARGS, "oracle": True})
    with pytest.raises(ValueError, match="choose one"):
        model.fit(unlabelled(), args={**ARGS, "oracle": True, "no_weight": True})


def test_an_image_that_fails_to_decode_is_named_by_its_row():
    good = io.BytesIO()
    unlabelled()[0]["image"].save(good, format="PNG")
    rows = [{"bytes": good.getvalue(), "path": None}] * 2 + [{"bytes": b"not an image", "path": None}]
    data = Dataset.from_dict({"image": rows}, features=Features({"image": Image()}))
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    with pytest.raises(ValueError, match="row 2 .* could not be decoded"):
        model.fit(data, args=ARGS)


def test_cosine_weights_are_the_official_codes_unscaled_softmax():
    model = UEOForImageClassification.from_clip(backbone(), NAMES)
    images = CheckedImages(unlabelled())
    cosine = zero_shot_pass(model, images, weights_from="cosine")
    pv = model.backbone.preprocess([images[i]["image"] for i in range(len(images))])
    with torch.no_grad():
        logits = model.logits_from_features(model.get_image_features(pixel_values=pv))
    torch.testing.assert_close(cosine, (logits / model.config.logit_scale).softmax(-1).amax(-1))
    with pytest.raises(ValueError, match="weights_from"):
        zero_shot_pass(model, images, weights_from="probs")
