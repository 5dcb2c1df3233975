"""The options that restore the official code's quirks (full mode): bias correction one step
ahead, and the raw gradients' clip factor applied to the adjusted update."""

import math

import pytest
import torch
from torch import nn

from hf_clipadapt.lora_pro import LoraProAdamW
from hf_clipadapt.testing_utils import assert_close_scaled

from .lorapro_helpers import clone, make_mlp_peft, mlp_batch


def first_update(model, **options):
    start = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    opt = LoraProAdamW(model, lr=1e-3, mode="full", **options)
    x, y = mlp_batch(0)
    nn.functional.mse_loss(model(x), y).backward()
    grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None)).item()
    opt.step()
    return {n: p.detach() - start[n] for n, p in model.named_parameters() if n in start}, grad_norm


def test_official_bias_correction_scales_the_first_update():
    base = make_mlp_peft()
    ours, _ = first_update(clone(base))
    official, _ = first_update(clone(base), official_bias_correction=True)
    # step 2 in place of 1: m̂ = 0.1·g/0.19 and v̂ = 0.001·g²/(1 − 0.999²), so the direction is
    # (0.1/0.19)/√(0.001/0.001999) ≈ 0.744 of Adam's sign(g̃), except where |g̃| is near ε = 1e-8
    # (measured: 3e-7 of an update whose largest entry is ~1e-3, so rtol 1e-3 of the largest)
    ratio = (0.1 / 0.19) / math.sqrt(0.001 / (1 - 0.999**2))
    for name in ours:
        assert_close_scaled(official[name], ratio * ours[name], rtol=1e-3, msg=name)


def test_official_clip_norm_divides_the_adjusted_update_by_the_raw_clip_factor():
    base = make_mlp_peft()
    ours, norm = first_update(clone(base))
    clipped, _ = first_update(clone(base), official_clip_norm=0.01)
    factor = (norm + 1e-6) / 0.01
    assert factor > 10
    for name in ours:
        torch.testing.assert_close(clipped[name], ours[name] / factor, rtol=1e-9, atol=1e-15)
    unclipped, _ = first_update(clone(base), official_clip_norm=1e6)  # factor max(1, ·) = 1
    assert all(torch.equal(unclipped[n], ours[n]) for n in ours)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mode="efficient", official_bias_correction=True),
        dict(mode="full", factored=True, official_clip_norm=1.0),
        dict(mode="full", official_clip_norm=-1.0),
    ],
)
def test_official_options_need_exact_full_mode(kwargs):
    with pytest.raises(ValueError, match="official"):
        LoraProAdamW(make_mlp_peft(), lr=1e-3, **kwargs)
