"""Data utilities: few-shot splits and augmentation views."""

from .augment import (
    AugmentedViews,
    dataset_augmentation,
    random_resized_crop,
    random_resized_crop_box,
    register_dataset_augmentation,
)
from .base_to_new import base_new_class_split, base_to_new_split, select_classes
from .few_shot import class_names, sample_few_shot, train_validation_split
from .loading import dataset_display_name, load_image_dataset, register_dataset_source

__all__ = [
    "base_new_class_split",
    "base_to_new_split",
    "select_classes",
    "AugmentedViews",
    "dataset_augmentation",
    "register_dataset_augmentation",
    "random_resized_crop",
    "random_resized_crop_box",
    "class_names",
    "sample_few_shot",
    "train_validation_split",
    "dataset_display_name",
    "load_image_dataset",
    "register_dataset_source",
]
