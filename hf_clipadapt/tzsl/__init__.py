"""Transductive zero-shot learning with an attribute decoder (ICASSP 2023), leak-free."""

from . import functional
from .configuration_tzsl import PRESETS, TZSLConfig
from .data import ZSLData, load_features_file, load_xlsa17, pseudo_unseen_split, save_features_file
from .modeling_tzsl import TZSLModel, TZSLOutput

__all__ = [
    "PRESETS",
    "TZSLConfig",
    "TZSLModel",
    "TZSLOutput",
    "ZSLData",
    "functional",
    "load_features_file",
    "load_xlsa17",
    "pseudo_unseen_split",
    "save_features_file",
]
