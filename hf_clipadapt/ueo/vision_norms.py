"""The LayerNorm affines of CLIP's vision tower that UEO trains, kept private to each model.

UEO (Liang et al., ICML 2024) trains the weight and bias of every LayerNorm of the
image encoder. Those tensors live inside the CLIP, which other models may share (a
zero-shot baseline built on the same `CLIPBackbone`). Training them in place would
change that other model too, so a UEO model works on a copy of the CLIP module tree
in which only the vision LayerNorm affines are new tensors; every other weight is the
same frozen tensor (no memory is duplicated beyond the LayerNorms).
"""

from __future__ import annotations

import copy

from torch import nn

from ..clip import CLIPBackbone


def vision_tower(model: nn.Module) -> nn.Module:
    """The image encoder of a CLIP-family model (`vision_model`)."""
    tower = getattr(model, "vision_model", None)
    if not isinstance(tower, nn.Module):
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise TypeError(
            f"UEO needs a CLIP-family model with a `vision_model` image encoder; this {kind!r} "
            f"model ({type(model).__name__}) has none."
        )
    return tower


def vision_layernorms(model: nn.Module) -> dict[str, nn.LayerNorm]:
    """{module name inside the vision tower: LayerNorm} for every affine LayerNorm; a clear
    error names the model type when the tower has none (UEO would have nothing to adapt
    on the image side)."""
    norms = {
        n: m for n, m in vision_tower(model).named_modules() if isinstance(m, nn.LayerNorm) and m.weight is not None
    }
    if not norms:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(
            f"the vision tower of this {kind!r} model has no LayerNorm with affine parameters, which UEO "
            "trains (pre_layrnorm, layer_norm1/2, post_layernorm in CLIP). Use a ViT-style CLIP image encoder."
        )
    return norms


def with_private_vision_layernorms(backbone: CLIPBackbone) -> CLIPBackbone:
    """A `CLIPBackbone` over a copy of `backbone.model` that shares every tensor except the
    vision LayerNorm affines, which are fresh copies that require grad; the rest stays frozen."""
    model = backbone.model
    norms = vision_layernorms(model)
    private = {id(t) for m in norms.values() for t in (m.weight, m.bias) if t is not None}
    shared = {id(t): t for t in (*model.parameters(), *model.buffers()) if id(t) not in private}
    copied = copy.deepcopy(model, memo=shared)  # memo: the deep copy reuses these tensors as they are
    out = CLIPBackbone(copied, backbone.tokenizer, backbone.image_processor, freeze=True)
    for module in vision_layernorms(copied).values():
        module.weight.requires_grad_(True)
        if module.bias is not None:
            module.bias.requires_grad_(True)
    return out


def vision_layernorm_parameter_names(prefix: str, model: nn.Module) -> list[str]:
    """Full parameter names (under `prefix`, e.g. "backbone.model.vision_model") of the vision LayerNorm affines."""
    names = []
    for name, module in vision_layernorms(model).items():
        names += [f"{prefix}.{name}.{p}" for p, t in module.named_parameters(recurse=False)]
    return names
