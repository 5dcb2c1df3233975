"""The registry of plain torch backbones an SFDA checkpoint may name.

A saved `SFDAConfig.torch_backbone` is a *key* of this registry, never an import
path: loading looks the key up here and calls the constructor registered under
it with `torch_backbone_kwargs`. Nothing named by config.json is imported, so a
downloaded checkpoint cannot make `from_pretrained`, `AutoModel.from_pretrained`
or `pipeline` run code of its choosing (SECURITY.md, "Loading").

Constructors enter the registry only from Python: `register_torch_backbone(name,
constructor)` (the examples' EfficientNet-Lite0, `examples/offline_assets`, registers
itself as `"efficientnet-lite0"` when imported), and the class of a module passed to
`SFDAForImageClassification.from_backbone` in the same process. A checkpoint
built on your own class loads in a new process once that class is registered again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}

# Keys written by earlier versions (an import path, from when the EfficientNet-Lite0 of the
# examples lived in the package) and the registry name they mean now.
_LEGACY_KEYS = {"hf_clipadapt.offline.backbones:EfficientNetLite0Features": "efficientnet-lite0"}
_KEY = re.compile(r"^[A-Za-z0-9_.:<>\-]{1,200}$")


def register_torch_backbone(name: str, constructor: Callable, *, overwrite: bool = False) -> None:
    """Let SFDA checkpoints whose `torch_backbone` is `name` be rebuilt with
    `constructor(**torch_backbone_kwargs)` (a `nn.Module` class or a function returning
    one, mapping pixel_values [B, 3, H, W] to pooled features [B, D]).

    Registering another constructor under a taken name raises unless `overwrite=True`."""
    if not isinstance(name, str) or not _KEY.match(name):
        raise ValueError(f"a torch backbone name is 1-200 letters, digits or '_.:<>-'; got {name!r}")
    if not callable(constructor):
        raise TypeError(f"the constructor registered as {name!r} must be callable, got {type(constructor).__name__}")
    known = _REGISTRY.get(name)
    if known is not None and known is not constructor and not overwrite:
        raise ValueError(
            f"the torch backbone name {name!r} is taken by {known!r}; pick another name or pass overwrite=True"
        )
    _REGISTRY[name] = constructor


def registered_torch_backbones() -> list[str]:
    """The names a checkpoint may give as `torch_backbone` in this process."""
    return sorted(_REGISTRY)


def get_torch_backbone(name: str) -> Callable:
    """The constructor registered as `name`; an unknown name is refused with the known ones."""
    name = _LEGACY_KEYS.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown torch backbone {name!r}: it is not among the registered ones {registered_torch_backbones()}. "
            "A checkpoint's torch_backbone is only looked up, never imported: if you trust this checkpoint and it "
            "was built on your own class, call hf_clipadapt.sfda.register_torch_backbone("
            f"{name!r}, YourClass) before from_pretrained."
        )
    return _REGISTRY[name]


def torch_backbone_key(module) -> str:
    """The registry name of `module`'s class: the name it is registered under, or else its
    `"module:QualName"` (then registered under it, for this process)."""
    cls = type(module)
    for name, constructor in _REGISTRY.items():
        if constructor is cls:
            return name
    default = f"{cls.__module__}:{cls.__qualname__}"
    register_torch_backbone(default, cls)
    return default


__all__ = ["get_torch_backbone", "register_torch_backbone", "registered_torch_backbones", "torch_backbone_key"]
