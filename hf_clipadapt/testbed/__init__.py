"""An offline vision-language testbed: a small `CLIPModel` pretrained here.

No pretrained CLIP weights install on these machines, so the project ships its
own: a 1.5M-parameter stock `transformers.CLIPModel` pretrained with the CLIP
contrastive loss on a procedural caption world built from real MNIST digits and
Fashion-MNIST items (`hf_clipadapt.testbed.world`), with a word-level
`CLIPTokenizer` for the world's grammar and a 48×48 `CLIPImageProcessorPil`.
The checkpoint lives in the package (`testbed_checkpoint_path()`) and loads like
any Hub CLIP::

    from hf_clipadapt.testbed import load_testbed_clip, load_suite, TESTBED_TEMPLATES

    backbone = load_testbed_clip()                 # a frozen CLIPBackbone
    suite = load_suite("base_to_new", seed=0)      # a datasets.DatasetDict
    names = suite["test_new"].features["label"].names
    weights = backbone.zero_shot_classifier(names, TESTBED_TEMPLATES)

    # or the raw transformers objects:
    model = CLIPModel.from_pretrained(testbed_checkpoint_path())   # AutoModel works too
    processor = CLIPProcessor.from_pretrained(testbed_checkpoint_path())

Suites: "few_shot", "base_to_new", "open_set" (unknowns labelled -1), "domain_shift"
(clean → noisy), "zsl" (compositional zero-shot: seen and unseen (colour, object)
classes with a class-attribute table); see `hf_clipadapt.testbed.suites`. Examples take them as
``--model testbed --dataset testbed:<suite>``: importing this package registers
the name "testbed" for the checkpoint (`hf_clipadapt.checkpoints`), the suites as
the dataset source "testbed:" (`hf_clipadapt.data.load_image_dataset`) and the
pretraining templates (`hf_clipadapt.clip.get_templates("testbed")`). The shared
layer knows nothing else about the testbed.

Pretraining captions call four objects by everyday names ("sweater", "trainer",
"3", "8"; `world.WEB_NAMES`), never by the label names the suites use. So
zero-shot CLIP with the label names is weak on exactly those classes, while the
image features separate them: a known gap that few-shot adaptation can close,
like real CLIP on a dataset's catalogue names. The pretraining script is
`benchmarks/testbed/pretrain_clip.py`; its numbers are in
`benchmarks/testbed/RESULTS.md`.
"""

from __future__ import annotations

from pathlib import Path

from .._lazy import exports_of, lazy_exports
from .world import TESTBED_TEMPLATES

_EXPORTS = {
    **exports_of(".suites", "SUITES", "UNKNOWN_LABEL", "base_combinations", "combination_name", "load_suite"),
    **exports_of(".zsl", "load_zsl_data", "zsl_attributes", "zsl_classes", "zsl_split_ids"),
    **exports_of(
        ".world",
        "ALL_OBJECTS",
        "BACKGROUNDS",
        "COLOUR_NAMES",
        "KNOWN_OBJECTS",
        "POSITIONS",
        "SIZE_NAMES",
        "UNKNOWN_OBJECTS",
        "SceneWorld",
        "held_out_combinations",
        "seen_combinations",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"


def testbed_checkpoint_path() -> str:
    """The directory of the committed checkpoint (model, tokenizer, image processor)."""
    if not (_CHECKPOINT / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the testbed checkpoint is missing from {_CHECKPOINT}; reinstall hf_clipadapt or "
            "rebuild it with `python benchmarks/testbed/pretrain_clip.py`"
        )
    return str(_CHECKPOINT)


# Its name starts with "test": keep pytest from collecting it when a test module imports it.
testbed_checkpoint_path.__test__ = False


def resolve_model_name(name: str) -> str:
    """ "testbed" -> the committed checkpoint's folder; any other name is returned as is.
    (`CLIPBackbone.from_pretrained("testbed")` resolves the name itself.)"""
    return testbed_checkpoint_path() if name == "testbed" else name


def _load_suite_spec(name: str, seed: int):
    from .suites import SUITES, load_suite

    if name not in SUITES:
        raise ValueError(f"unknown testbed suite {name!r}; use one of {['testbed:' + s for s in SUITES]}")
    return load_suite(name, seed=seed)


def _register() -> None:
    from ..checkpoints import register_checkpoint_alias
    from ..clip.templates import register_templates
    from ..data.augment import register_dataset_augmentation
    from ..data.loading import register_dataset_source

    register_checkpoint_alias("testbed", _CHECKPOINT)
    register_templates("testbed", TESTBED_TEMPLATES)
    register_dataset_source("testbed", _load_suite_spec)
    # Pretraining never mirrored a digit or an item of clothing (its captions never say so):
    # flipped training views would teach the adapters images the CLIP never saw.
    register_dataset_augmentation("testbed", view_flip=False)


_register()


def load_testbed_clip(*, freeze: bool = True, **kwargs):
    """The pretrained testbed model as a `hf_clipadapt.clip.CLIPBackbone` (model,
    tokenizer and image processor, frozen by default), the same object every method
    gets from `CLIPBackbone.from_pretrained("openai/clip-vit-base-patch16")`.

    `kwargs` go to `AutoModel.from_pretrained`. For the raw transformers objects use
    `CLIPModel.from_pretrained(testbed_checkpoint_path())` and `CLIPProcessor.from_pretrained(...)`.
    """
    from ..clip import CLIPBackbone

    return CLIPBackbone.from_pretrained(testbed_checkpoint_path(), freeze=freeze, **kwargs)


__all__ = sorted(_EXPORTS) + [
    "TESTBED_TEMPLATES",
    "load_testbed_clip",
    "resolve_model_name",
    "testbed_checkpoint_path",
]
