"""Shared pieces of the UEO tests: a tiny CLIP and tiny unlabelled image sets."""

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_dataset, tiny_image_processor

NAMES = ["red", "green", "blue"]


def backbone():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def unlabelled(per_class=3, num_classes=3, seed=0):
    return tiny_image_dataset(num_classes, per_class, seed=seed).remove_columns("label")
