"""The preprocessing a model was trained with travels with it, through the Python API alone:
`fit` with an `SFDAImageTransform` records the size and normalisation in the config, saves a
matching `preprocessor_config.json`, so `pipeline` and `evaluate` (no transform) see what
training saw; a transform of the user's own gets a warning saying what the checkpoint lacks."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipadapt.sfda import SFDAImageTransform, fit

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images():
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))  # MNIST-like, one channel
    wide = Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8))  # not square
    return [gray, wide]


@pytest.mark.parametrize("size", [7, 16, 64])
def test_image_processor_reproduces_the_eval_transform(size):
    tf = SFDAImageTransform(size, MEAN, STD)
    x = tf(_images(), torch.arange(2), 0)
    y = tf.image_processor()(images=_images(), return_tensors="pt")["pixel_values"]
    assert x.shape == y.shape == (2, 3, size, size)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_eval_transform_is_resize_then_centre_crop_then_normalise():
    # an independent derivation on a constant-per-column image: the crop keeps the centre columns
    img = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)))
    tf = SFDAImageTransform(16, (0.0,) * 3, (1.0,) * 3, resize=32)
    x = tf([img], torch.tensor([0]), 0)
    expected = torch.tensor(np.arange(8, 24) * 8 / 255.0, dtype=torch.float32)
    torch.testing.assert_close(x[0, 1, 5], expected, rtol=0, atol=1e-6)


def test_bad_transform_settings_are_refused():
    with pytest.raises(ValueError, match="at least size"):
        SFDAImageTransform(32, resize=16)
    with pytest.raises(ValueError, match="3 channel values"):
        SFDAImageTransform(32, mean=(0.5,), std=(0.5,))


def _fit_source(model, tiny_dataset, transform, eval_transform=None):
    fit(model, tiny_dataset, stage="source", transform=transform, eval_transform=eval_transform, batch_size=4)
    return model


def test_fit_records_the_transform_and_pipeline_uses_it(make_torch_model, tiny_dataset, tmp_path):
    from transformers import pipeline

    model = make_torch_model()
    train_tf = SFDAImageTransform(16, MEAN, STD, augment=True)
    eval_tf = SFDAImageTransform(16, MEAN, STD)
    _fit_source(model, tiny_dataset, train_tf, eval_tf).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["image_size"], config["image_resize"]) == (16, 17)
    assert config["image_mean"] == list(MEAN) and config["image_std"] == list(STD)
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 16, "width": 16} and processor["image_mean"] == list(MEAN)
    assert "16×16 pixels" in (tmp_path / "README.md").read_text()

    images = list(tiny_dataset["image"][:3])
    with torch.no_grad():
        probs = model.eval()(eval_tf(images, torch.arange(3), 0)).logits.softmax(-1)
    out = pipeline("image-classification", model=str(tmp_path), top_k=3)(images)
    # a model built from num_labels alone took the source's ClassLabel names, which pipeline prints
    assert model.config.id2label == {0: "class0", 1: "class1", 2: "class2"}
    for row, p in zip(out, probs):
        scores = {d["label"]: d["score"] for d in row}
        expected = {model.config.id2label[i]: float(p[i]) for i in range(3)}
        assert scores == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_evaluate_without_a_transform_uses_the_recorded_one(make_torch_model, tiny_dataset):
    model = _fit_source(make_torch_model(), tiny_dataset, SFDAImageTransform(16, augment=True))
    by_default = model.evaluate(tiny_dataset)
    explicit = model.evaluate(tiny_dataset, transform=SFDAImageTransform(16))
    assert by_default == explicit


def test_an_unrecorded_model_asks_for_a_transform(make_torch_model, tiny_dataset, to_pixels, caplog):
    model = make_torch_model()
    with caplog.at_level(logging.WARNING, logger="hf_clipadapt.sfda.transforms"):
        _fit_source(model, tiny_dataset, to_pixels)
    assert "records no input size or normalisation" in caplog.text
    assert "record_preprocessing" in caplog.text
    with pytest.raises(ValueError, match="records no preprocessing"):
        model.evaluate(tiny_dataset)
    model.record_preprocessing(SFDAImageTransform(16))
    assert model.config.image_size == 16 and model.image_processor is not None
    with pytest.raises(TypeError, match="needs an SFDAImageTransform"):
        model.record_preprocessing(to_pixels)


def test_fit_leaves_eval_mode_and_predict_always_uses_it(make_torch_model, tiny_dataset):
    model = _fit_source(make_torch_model(), tiny_dataset, SFDAImageTransform(16, augment=True))
    assert not model.training  # as from_pretrained gives it
    x = SFDAImageTransform(16)(list(tiny_dataset["image"][:6]), torch.arange(6), 0)
    with torch.no_grad():
        eval_logits = model(x).logits
        model.train()
        train_logits = model(x).logits  # the head's BatchNorm on this batch's statistics
    assert not torch.allclose(train_logits, eval_logits)
    assert torch.equal(model.predict(x), model.decide(eval_logits)) and model.training  # mode restored
