"""The damped closed form (b_damping, efficient mode's default) against float64
projectors and an explicit least-squares X, built only here."""

import pytest
import torch
from lorapro_helpers import clone, make_mlp_peft, train

from hf_clipadapt import LoraProAdamW
from hf_clipadapt.lora_pro import functional as lorapro_fn

D = torch.float64


def _pair(m=9, n=7, r=3, seed=0, b_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, n, generator=g, dtype=D)
    B = b_scale * torch.randn(m, r, generator=g, dtype=D)
    G = torch.randn(m, n, generator=g, dtype=D)
    return A, B, G


def _damped_projector(A, B, b_damping):
    r = A.shape[0]
    lam = b_damping * torch.trace(A @ A.T) / r
    return B @ torch.linalg.inv(B.T @ B + lam * torch.eye(r, dtype=D)) @ B.T


@pytest.mark.parametrize("b_damping", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("X", ["sylvester", None, "given"])
@pytest.mark.parametrize("b_scale", [1.0, 1e-3])
def test_equivalent_gradient_is_P_g_plus_complement_g_PA(b_damping, X, b_scale):
    A, B, G = _pair(b_scale=b_scale)
    s = 1.7
    gA, gB = s * B.T @ G, s * G @ A.T
    X = torch.randn(3, 3, dtype=D) if X == "given" else X
    got_A, got_B = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, X=X, b_damping=b_damping)
    P = _damped_projector(A, B, b_damping)
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    want = P @ G + (torch.eye(9, dtype=D) - P) @ G @ P_A
    got = lorapro_fn.equivalent_gradient(A, B, got_A, got_B, s)
    err = (got - want).abs().max() / want.abs().max()
    assert err < 1e-10, err


@pytest.mark.parametrize("b_damping", [0.3, 1.0])
def test_sylvester_x_is_the_least_squares_x_and_its_residual_vanishes(b_damping):
    A, B, G = _pair(m=8, n=6, r=2, seed=4, b_scale=0.05)
    s, r = 1.3, 2
    gA, gB = s * B.T @ G, s * G @ A.T
    a0, b0 = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, X=None, b_damping=b_damping)
    design = torch.stack(
        [torch.cat([(E @ A).flatten(), (-B @ E).flatten()]) for E in torch.eye(r * r, dtype=D).view(r * r, r, r)], 1
    )
    target = torch.cat([(gA - a0).flatten(), (gB - b0).flatten()])
    x_star = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.view(r, r)
    got_A, got_B = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, b_damping=b_damping)
    x_got = (got_A - a0) @ torch.linalg.pinv(A)
    assert (x_got - x_star).abs().max() / x_star.abs().max() < 1e-9
    # The stationarity condition the package solves, written out: BᵀB·X + X·AAᵀ = C.
    lam = b_damping * torch.trace(A @ A.T) / r
    K = torch.linalg.inv(B.T @ B + lam * torch.eye(r, dtype=D))
    M = torch.linalg.inv(A @ A.T)
    C = -(K @ gA @ A.T) / s**2 + lam * (K @ B.T @ gB @ M) / s**2
    res = B.T @ B @ x_got + x_got @ A @ A.T - C
    assert res.norm() / C.norm() < 1e-9


def test_damping_bounds_gA_hat_while_B_is_tiny():
    """The failure it fixes: undamped, ĝA grows like 1/‖B‖ as B → 0."""
    A, B, G = _pair(seed=2, b_scale=1e-4)
    s = 2.0
    gA, gB = s * B.T @ G, s * G @ A.T
    raw, _ = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0)
    damped, _ = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, b_damping=1.0)
    assert raw.norm() > 100 * G.norm()  # ~1e3 here: ‖B‖ ~ 1e-4
    assert damped.norm() < G.norm()


def test_optimizer_defaults_efficient_damped_full_exact():
    model = make_mlp_peft()
    assert LoraProAdamW(model, mode="efficient").b_damping == 1.0
    assert LoraProAdamW(model, mode="full").b_damping == 0.0
    with pytest.raises(ValueError, match="b_damping"):
        LoraProAdamW(model, mode="efficient", b_damping=-1.0)


def test_b_damping_zero_reproduces_the_undamped_efficient_mode():
    a, b = make_mlp_peft(), None
    b = clone(a)
    train(a, LoraProAdamW(a, mode="efficient", b_damping=0.0, damping=0.0, lr=1e-2), 3)
    train(b, LoraProAdamW(b, mode="efficient", b_damping=1e-12, damping=0.0, lr=1e-2), 3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert (p - q).abs().max() <= 1e-6 * q.abs().max().clamp_min(1e-12)


def test_config_b_damping_reaches_the_optimizer_and_not_the_saved_adapter():
    from peft import get_peft_model
    from torch import nn

    from hf_clipadapt.lora_pro import LoraProConfig, create_lorapro_optimizer

    base = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    cfg = LoraProConfig(r=2, lora_alpha=4, target_modules=["0", "2"], lorapro_mode="efficient", lorapro_b_damping=0.5)
    model = get_peft_model(base, cfg)
    assert create_lorapro_optimizer(model, lr=1e-3).b_damping == 0.5
    assert "lorapro_b_damping" not in cfg.to_dict()
    with pytest.raises(ValueError, match="lorapro_b_damping"):
        LoraProConfig(r=2, target_modules=["0"], lorapro_b_damping=-1)
