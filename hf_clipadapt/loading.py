"""What the CLIP-adapted models' constructors and loaders check and resolve: the CLIP
backbone they attach, the keyword arguments `from_pretrained` takes, tensor inputs, and a
seeded initialisation. Split from `modeling_utils` so the base class keeps to its concerns."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .clip.backbone import CLIPBackbone


@contextlib.contextmanager
def seeded_init(seed: int):
    """Run a model's construction with torch's RNG seeded to `seed`, then restore the
    global RNG state: a model's random initial parameters are then the same in every
    process (they used to come from the unseeded global RNG, so the same `fit(seed=...)`
    gave different results in two processes)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# Keyword arguments transformers' Auto classes and `pipeline` pass to `from_pretrained`
# that a CLIP-adapted model reads (dtype, attention) or safely ignores (bookkeeping).
_CLIP_LOAD_KWARGS = ("dtype", "torch_dtype", "attn_implementation")
_IGNORED_LOAD_KWARGS = (
    "trust_remote_code",
    "device_map",
    "use_safetensors",
    "weights_only",
    "output_loading_info",
    "adapter_kwargs",
    "adapter_name",
    "low_cpu_mem_usage",
    "code_revision",
)


def as_backbone(backbone) -> CLIPBackbone:
    """A `CLIPBackbone` from itself or from a checkpoint name / alias."""
    if isinstance(backbone, (str, Path)):
        backbone = CLIPBackbone.from_pretrained(str(backbone))
    if not isinstance(backbone, CLIPBackbone):
        raise TypeError(f"backbone must be a CLIPBackbone or a checkpoint name, got {type(backbone).__name__}")
    return backbone


def _check_backbone_width(backbone: CLIPBackbone, config, class_name: str) -> None:
    if backbone.embed_dim != config.embed_dim:
        raise ValueError(
            f"this {class_name} was built for a CLIP with embedding width {config.embed_dim}, but the given CLIP "
            f"({backbone.name_or_path}) has width {backbone.embed_dim}. Attach the CLIP it was fitted on "
            f"({config.base_model_name_or_path!r})."
        )


def _split_load_kwargs(cls, kwargs: dict) -> dict:
    """Keep the kwargs that go to the CLIP, drop transformers' bookkeeping, refuse the rest."""
    clip_kwargs = {k: kwargs.pop(k) for k in _CLIP_LOAD_KWARGS if k in kwargs}
    if "torch_dtype" in clip_kwargs:
        clip_kwargs["dtype"] = clip_kwargs.pop("torch_dtype")
    if clip_kwargs.get("dtype") == "auto":
        clip_kwargs.pop("dtype")
    unknown = [k for k in kwargs if not k.startswith("_") and k not in _IGNORED_LOAD_KWARGS]
    if unknown:
        raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {unknown}")
    return clip_kwargs


def _check_tensor_input(**inputs) -> None:
    """A list (of images, of arrays, of tensors) where a batched tensor is expected fails
    deep inside with an AttributeError: refuse it here and say how to batch it."""
    for name, value in inputs.items():
        if value is not None and not isinstance(value, torch.Tensor):
            shape = "[batch, 3, H, W]" if name == "pixel_values" else "[batch, D]"
            raise TypeError(
                f"{name} must be a torch.Tensor {shape}, got {type(value).__name__}. Batch it first: "
                "torch.stack(list_of_tensors), or the image processor's output "
                "processor(images=..., return_tensors='pt')['pixel_values']."
            )


def _check_saved_embed_dim(cls, path, hub: dict) -> None:
    """A config.json without `embed_dim` would take the default (512) and then be refused as
    "a CLIP of another width"; say what is really wrong."""
    saved, _ = cls.config_class.get_config_dict(path, **hub)
    if "embed_dim" not in saved:
        raise OSError(
            f"{path}: config.json has no 'embed_dim' (the embedding width of the CLIP this {cls.__name__} was "
            "fitted on); the file is incomplete or was edited. Restore the field (the CLIP's projection_dim), "
            "or save the model again."
        )


def _load_base_clip(ref: str | None, class_name: str, clip_kwargs: dict) -> CLIPBackbone:
    if not ref:
        raise OSError(f"this {class_name} names no base CLIP; pass backbone=CLIPBackbone(...)")
    try:
        return CLIPBackbone.from_pretrained(ref, **clip_kwargs)
    except (OSError, ValueError) as e:
        raise OSError(
            f"could not load the base CLIP {ref!r} this {class_name} refers to ({e}). Pass "
            "backbone=CLIPBackbone(...), or load_backbone=False to use forward(image_features=...) only."
        ) from e
