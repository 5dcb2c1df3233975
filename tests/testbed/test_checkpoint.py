"""The committed checkpoint: loads through the stock Auto classes and is genuinely pretrained."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipadapt.testbed import COLOUR_NAMES, load_testbed_clip, testbed_checkpoint_path
from hf_clipadapt.testbed.modeling import CANVAS_SIZE
from hf_clipadapt.testbed.world import seen_combinations


@pytest.fixture(scope="module")
def backbone():
    return load_testbed_clip()


def test_checkpoint_is_small_and_complete():
    path = Path(testbed_checkpoint_path())
    names = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "training_log.json",
    } <= names
    assert sum(p.stat().st_size for p in path.iterdir()) < 10 * 2**20
    log = json.loads((path / "training_log.json").read_text())
    assert log["args"]["seed"] == 0 and log["train_wall_time_s"] > 0


def test_loads_with_clipmodel_and_automodel_identically():
    from transformers import AutoModel, CLIPModel

    path = testbed_checkpoint_path()
    a, b = CLIPModel.from_pretrained(path), AutoModel.from_pretrained(path)
    assert type(b) is CLIPModel
    assert a.config.vision_config.image_size == CANVAS_SIZE
    assert next(a.parameters()).dtype == torch.float32
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tokenizer_and_processor_load_through_auto_classes():
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, CLIPProcessor, CLIPTokenizer

    path = testbed_checkpoint_path()
    tok = AutoTokenizer.from_pretrained(path)
    assert isinstance(tok, CLIPTokenizer)
    ids = tok("a photo of a red sneaker.")["input_ids"]
    vocab_size = json.loads((Path(path) / "config.json").read_text())["text_config"]["vocab_size"]
    assert len(ids) == 9 and max(ids) < vocab_size == len(tok)
    assert AutoImageProcessor.from_pretrained(path).crop_size == {"height": CANVAS_SIZE, "width": CANVAS_SIZE}
    assert isinstance(AutoProcessor.from_pretrained(path), CLIPProcessor)


def colour_accuracy(backbone, world) -> float:
    """Zero-shot: name the colour of 60 scenes of synthetic blob sprites (not real
    objects) among the 10 colours, prompts "a photo of a {colour} thing."; chance is 10%."""
    scenes = world.sample(60, seed=123, combinations=seen_combinations())
    pixel_values = backbone.preprocess([Image.fromarray(im) for im in world.render(scenes)])
    weights = backbone.zero_shot_classifier([f"{c} thing" for c in COLOUR_NAMES])
    preds = (backbone.encode_images(pixel_values) @ weights.t()).argmax(-1).numpy()
    truth = np.array([COLOUR_NAMES.index(c) for c in scenes.colour])
    return float((preds == truth).mean())


def test_zero_shot_colour_naming_beats_chance_on_generated_scenes(backbone, world):
    assert colour_accuracy(backbone, world) > 0.5


def test_an_untrained_model_does_not_pass_the_same_check(world):
    """Guards the check above against being trivially satisfiable."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPModel

    from hf_clipadapt.clip import CLIPBackbone

    path = testbed_checkpoint_path()
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig.from_pretrained(path))
    untrained = CLIPBackbone(model, AutoTokenizer.from_pretrained(path), AutoImageProcessor.from_pretrained(path))
    assert colour_accuracy(untrained, world) < 0.3


def test_examples_can_name_the_testbed_model():
    from hf_clipadapt.testbed import resolve_model_name

    assert resolve_model_name("testbed") == testbed_checkpoint_path()
    assert resolve_model_name("openai/clip-vit-base-patch16") == "openai/clip-vit-base-patch16"


def test_the_stock_zero_shot_pipeline_runs_on_the_checkpoint(world):
    """Nothing custom: transformers' own pipeline loads the folder and names colours."""
    from transformers import pipeline

    scenes = world.sample(30, seed=7, combinations=seen_combinations())
    images = [Image.fromarray(im) for im in world.render(scenes)]
    classify = pipeline("zero-shot-image-classification", model=testbed_checkpoint_path())
    out = classify(
        images, candidate_labels=[f"{c} thing" for c in COLOUR_NAMES], hypothesis_template="a photo of a {}."
    )
    named = [o[0]["label"].split()[0] for o in out]
    assert np.mean([n == c for n, c in zip(named, scenes.colour)]) > 0.5  # chance: 0.1
