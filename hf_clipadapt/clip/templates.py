"""Prompt templates for zero-shot CLIP classifiers.

The per-dataset templates are the hand-crafted ones of the CoOp benchmark suite
(Zhou et al., 2022), which every later few-shot paper (Tip-Adapter, GDA, SHIP,
CraFT, ...) reuses for its zero-shot baseline. ImageNet uses the 7-template
ensemble that Tip-Adapter selected from CLIP's 80 templates.
"""

from __future__ import annotations

import re

DEFAULT_TEMPLATES: list[str] = ["a photo of a {}."]

IMAGENET_TEMPLATES: list[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

DATASET_TEMPLATES: dict[str, list[str]] = {
    "oxford_pets": ["a photo of a {}, a type of pet."],
    "oxford_flowers": ["a photo of a {}, a type of flower."],
    "fgvc_aircraft": ["a photo of a {}, a type of aircraft."],
    "dtd": ["{} texture."],
    "eurosat": ["a centered satellite photo of {}."],
    "stanford_cars": ["a photo of a {}."],
    "food101": ["a photo of {}, a type of food."],
    "sun397": ["a photo of a {}."],
    "caltech101": ["a photo of a {}."],
    "ucf101": ["a photo of a person doing {}."],
    "imagenet": IMAGENET_TEMPLATES,
}

# Spellings met in the wild (CoOp class names, Hub repo ids) that the generic
# normalisation below cannot map on its own.
_ALIASES = {
    "oxfordpets": "oxford_pets",
    "oxford_iiit_pet": "oxford_pets",
    "oxfordflowers": "oxford_flowers",
    "oxford_flowers102": "oxford_flowers",
    "flowers102": "oxford_flowers",
    "fgvcaircraft": "fgvc_aircraft",
    "stanfordcars": "stanford_cars",
    "describabletextures": "dtd",
    "caltech_101": "caltech101",
    "food_101": "food101",
    "sun_397": "sun397",
    "ucf_101": "ucf101",
    "imagenet_1k": "imagenet",
    "ilsvrc2012": "imagenet",
}


def register_templates(dataset_name: str, templates: list[str]) -> None:
    """Make `get_templates(dataset_name)` (and its variants, e.g. "<name>:<suite>" or
    "<name>-<suite>") return `templates`. Packages that bring their own data (the
    testbed) register their captions' templates this way."""
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ValueError(f"templates must be a non-empty list with a '{{}}' placeholder in each; bad: {bad}")
    DATASET_TEMPLATES[normalize_dataset_name(dataset_name)] = list(templates)


def normalize_dataset_name(name: str) -> str:
    """ "OxfordPets", "oxford-pets", "user/Oxford_Pets" -> "oxford_pets"; a variant of a
    known dataset ("eurosat:rgb", "eurosat-rgb") maps to that dataset."""
    name = name.strip().rsplit("/", 1)[-1]
    # CamelCase -> snake_case before lowercasing, so "OxfordPets" keeps its word break.
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    squashed = name.replace("_", "")  # "euro_sat" (from "EuroSAT") -> "eurosat"
    parts = name.split("_")
    prefixes = ["_".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]  # "x_open_set" -> "x_open", "x"
    for candidate in (name, squashed, *prefixes):
        if candidate in DATASET_TEMPLATES:
            return candidate
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    return name


def get_templates(dataset_name: str | None) -> list[str]:
    """The templates for `dataset_name` (any common spelling); unknown or None -> ["a photo of a {}."].

    A name that is unknown but close to a known one ("eurosta") is refused with the close
    matches, rather than silently getting the one default template: pass `templates=`
    yourself, or `register_templates(name, ...)`, for a dataset that really is another one.
    Returns a fresh list, so callers may append their own templates safely.
    """
    if dataset_name is None:
        return list(DEFAULT_TEMPLATES)
    key = normalize_dataset_name(dataset_name)
    if key not in DATASET_TEMPLATES:
        _refuse_near_miss(dataset_name, key)
    return list(DATASET_TEMPLATES.get(key, DEFAULT_TEMPLATES))


def _refuse_near_miss(dataset_name: str, key: str, cutoff: float = 0.8) -> None:
    import difflib

    known = sorted(set(DATASET_TEMPLATES) | set(_ALIASES))
    close = difflib.get_close_matches(key, known, n=3, cutoff=cutoff)
    if close:
        raise ValueError(
            f"no template set named {dataset_name!r}; did you mean {' or '.join(repr(c) for c in close)}? Known: "
            f"{sorted(DATASET_TEMPLATES)}. For a dataset of its own, pass templates= or call "
            f"register_templates({dataset_name!r}, [...]); unknown names far from these get {DEFAULT_TEMPLATES}."
        )
