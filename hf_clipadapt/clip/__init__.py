"""The shared CLIP layer: backbone wrapper, prompt templates, soft prompts."""

from .backbone import CLIPBackbone, PreprocessTransform, check_classnames, prompt_name
from .soft_prompt import PromptLearner, PromptTokens, SoftPromptTextEncoder
from .templates import DATASET_TEMPLATES, DEFAULT_TEMPLATES, IMAGENET_TEMPLATES, get_templates, normalize_dataset_name

__all__ = [
    "CLIPBackbone",
    "PreprocessTransform",
    "check_classnames",
    "prompt_name",
    "PromptLearner",
    "PromptTokens",
    "SoftPromptTextEncoder",
    "DATASET_TEMPLATES",
    "DEFAULT_TEMPLATES",
    "IMAGENET_TEMPLATES",
    "get_templates",
    "normalize_dataset_name",
]
