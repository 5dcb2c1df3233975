"""create_lorapro_optimizer: build a LoRA-Pro optimizer the way
`peft.optimizers.create_loraplus_optimizer` builds LoRA+, with the mode and
damping taken from the model's LoraProConfig when not given."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import LoraProBase
from .optimizer import LoraProAdamW, LoraProSGD

__all__ = ["create_lorapro_optimizer"]


def config_kwargs(model: nn.Module) -> dict:
    """Optimizer settings from the LoraProConfig(s) of a PeftModel's active adapters."""
    from .configuration_lora_pro import LoraProConfig

    configs = getattr(model, "peft_config", None) or getattr(getattr(model, "base_model", None), "peft_config", None)
    if not isinstance(configs, dict):
        return {}
    try:  # only the adapters being trained count; PeftModel knows which are active
        active = set(model.active_adapters)
    except (AttributeError, TypeError, ValueError):
        active = set(configs)
    found = {}
    for name, cfg in configs.items():
        if isinstance(cfg, LoraProConfig) and name in active:
            found[name] = cfg.optimizer_kwargs()
    settings = {tuple(sorted(v.items())) for v in found.values()}
    if len(settings) > 1:
        raise ValueError(
            f"adapters {sorted(found)} carry different LoRA-Pro settings {found}; one optimizer runs one mode. "
            "Pass mode=/damping= to create_lorapro_optimizer explicitly."
        )
    return dict(next(iter(settings))) if settings else {}


def create_lorapro_optimizer(
    model: nn.Module,
    optimizer_cls: type[LoraProBase] = None,
    *,
    lr: float,
    mode: str | None = None,
    damping: float | None = None,
    **kwargs: Any,
) -> LoraProBase:
    """Build a LoRA-Pro optimizer for `model`, in the shape of
    `peft.optimizers.create_loraplus_optimizer`.

    mode and damping default to the model's LoraProConfig, then to "full" and 1e-8.
    optimizer_cls is LoraProAdamW (default) or LoraProSGD; other kwargs (betas,
    eps, weight_decay, moment_dtype / momentum) go to it.
    """
    optimizer_cls = LoraProAdamW if optimizer_cls is None else optimizer_cls
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, LoraProBase)):
        raise TypeError(f"optimizer_cls must be LoraProAdamW or LoraProSGD, got {optimizer_cls!r}.")
    from_config = config_kwargs(model)
    damping = from_config.get("damping", 1e-8) if damping is None else damping
    if optimizer_cls is LoraProSGD:
        if mode is not None:
            raise ValueError("LoraProSGD has no mode (it is the paper's Algorithm 1); drop mode=.")
        return LoraProSGD(model, lr=lr, damping=damping, **kwargs)
    mode = from_config.get("mode", "full") if mode is None else mode
    if "b_damping" in from_config:
        kwargs.setdefault("b_damping", from_config["b_damping"])
    return optimizer_cls(model, lr=lr, mode=mode, damping=damping, **kwargs)
