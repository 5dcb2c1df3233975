"""Parity: LoRA-Pro's full-mode step against a float64 re-derivation of the official step.

The reference follows mrflogs/LoRA-Pro, the patched DeepSpeed
`DeepSpeed-0.15.1/deepspeed/runtime/zero/stage_1_and_2.py`, read line by line:
- `step()` (lines 1897-1996): `global_step += 1` (1935) *before* the adjustment (1938), the
  gradient norm taken on the raw gradients first (1928), the clip factor of
  `unscale_and_clip_grads` (2045-2052: max(1, (‖g‖ + 1e-6)/clip)) applied to the adjusted
  gradients (1983), then the wrapped optimizer, which the official scripts set to SGD
  without weight decay (`minimal_lora_llama2_math_transformers.py` lines 141-145).
- `lorapro_full_adjustment` (lines 1828-1895): pinv(AAᵀ + δI), pinv(BᵀB + δI), δ = 1e-8
  (1837-1854); the X = 0 closed form on the raw gradients (1856-1857); the equivalent
  gradient s·(B·ĝA + ĝB·A) (1858); Adam with β = (0.9, 0.999), moments started at
  (1 − β)·g on the first call (1860-1865), bias corrections at step = global_step + 1
  (1867-1873), ε = 1e-8 added after the corrected root; the map back s·Bᵀ·d, s·d·Aᵀ
  (1878-1879); the closed form with X from the Sylvester equation
  BᵀB·X + X·AAᵀ = −(1/s²)·pinv(BᵀB + δI)·gA'·Aᵀ (1888-1892, `solve_sylvester` 2611).
- s is hard-coded to 16/8 = 2 there (line 1841): the model below uses r = 2, α = 4.
The reference's moments stay float64 (the official ones are bf16 under bf16 training).
"""

import copy

import numpy as np
import scipy.linalg
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from hf_clipadapt.lora_pro import LoraProAdamW
from hf_clipadapt.testing_utils import assert_close_scaled

D, S, DELTA, LR = torch.float64, 2.0, 1e-8, 1e-2


def tiny_lora_model():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 5))
    return get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"])).to(D)


def batch(i):
    g = torch.Generator().manual_seed(10 + i)
    return torch.randn(8, 6, generator=g, dtype=D), torch.randn(8, 5, generator=g, dtype=D)


def pairs_of(model):
    return [
        (m.lora_A["default"].weight, m.lora_B["default"].weight)
        for m in model.modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    ]


def official_adjustment(A, B, gA, gB, state, step):
    """Lines 1842-1892 for one pair, in float64: returns the adjusted (ĝA, ĝB)."""
    r, m = A.shape[0], B.shape[0]
    AAt_inv = torch.linalg.pinv(A @ A.T + DELTA * torch.eye(r, dtype=D))
    BtB_inv = torch.linalg.pinv(B.T @ B + DELTA * torch.eye(r, dtype=D))
    project = torch.eye(m, dtype=D) - B @ BtB_inv @ B.T
    a0, b0 = BtB_inv @ gA / S**2, project @ gB @ AAt_inv / S**2
    equivalent = S * B @ a0 + S * b0 @ A
    if not state:
        state["m"], state["v"] = 0.1 * equivalent, 0.001 * equivalent**2
    else:
        state["m"] = 0.9 * state["m"] + 0.1 * equivalent
        state["v"] = 0.999 * state["v"] + 0.001 * equivalent**2
    denom = state["v"].sqrt() / np.sqrt(1 - 0.999**step) + 1e-8
    d = state["m"] / (1 - 0.9**step) / denom
    gA2, gB2 = S * B.T @ d, S * d @ A.T
    C = -(1 / S**2) * BtB_inv @ gA2 @ A.T
    X = torch.from_numpy(scipy.linalg.solve_sylvester((B.T @ B).numpy(), (A @ A.T).numpy(), C.numpy()))
    return BtB_inv @ gA2 / S**2 + X @ A, project @ gB2 @ AAt_inv / S**2 - B @ X


def official_run(model, steps, step_offset, clip):
    states = {}
    for t in range(1, steps + 1):
        x, y = batch(t)
        model.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        params = [p for p in model.parameters() if p.requires_grad]
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params)).item()
        factor = max(1.0, (norm + 1e-6) / clip) if clip else 1.0
        with torch.no_grad():
            updates = [
                official_adjustment(A, B, A.grad, B.grad, states.setdefault(i, {}), t + step_offset)
                for i, (A, B) in enumerate(pairs_of(model))
            ]
            for (A, B), (uA, uB) in zip(pairs_of(model), updates):
                A -= LR * uA / factor
                B -= LR * uB / factor
    return model


def library_run(model, steps, **options):
    opt = LoraProAdamW(model, lr=LR, mode="full", **options)
    for t in range(1, steps + 1):
        x, y = batch(t)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


def compare(ours, reference):
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        if p.requires_grad:
            assert_close_scaled(p.detach(), q.detach(), rtol=1e-7, msg=name)


def test_official_options_reproduce_the_official_step():
    """official_bias_correction + official_clip_norm=1.0 (the official runs' max_grad_norm)."""
    start = tiny_lora_model()
    assert all(torch.count_nonzero(B) == 0 for _, B in pairs_of(start))  # the first step runs at B = 0
    ours = library_run(copy.deepcopy(start), 4, official_bias_correction=True, official_clip_norm=1.0)
    reference = official_run(copy.deepcopy(start), 4, step_offset=1, clip=1.0)
    compare(ours, reference)
    moved = [(p - q).abs().max() for p, q in zip(reference.parameters(), start.parameters()) if p.requires_grad]
    assert min(moved) > 1e-4  # every factor trained, so the comparison is not of unchanged weights


def test_defaults_are_the_official_step_with_adams_bias_correction_and_no_update_clipping():
    start = tiny_lora_model()
    ours = library_run(copy.deepcopy(start), 4)
    compare(ours, official_run(copy.deepcopy(start), 4, step_offset=0, clip=0.0))
    official = official_run(copy.deepcopy(start), 4, step_offset=1, clip=1.0)
    differs = [(p - q).abs().max().item() for p, q in zip(ours.parameters(), official.parameters()) if p.requires_grad]
    assert max(differs) > 1e-4  # the two quirks change the step: the options are not no-ops
