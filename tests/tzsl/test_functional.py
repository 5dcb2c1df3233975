import math

import pytest
import torch

from hf_clipadapt.testing_utils import assert_close_scaled
from hf_clipadapt.tzsl import functional as Fz


def test_gradient_penalty_linear_critic_matches_hand_computation():
    # D(x) = w.x has gradient w everywhere: penalty = lambda * (||w|| - 1)^2.
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    real, fake = torch.randn(7, 2), torch.randn(7, 2)
    gp = Fz.gradient_penalty(lambda x: x @ w, real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)


def test_gradient_penalty_quadratic_critic_uses_the_interpolate():
    # D(x) = 0.5 ||x||^2 has gradient x_hat = alpha*real + (1-alpha)*fake.
    real = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    fake = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    alpha = torch.tensor([[0.5], [0.25]])
    # x_hat = [1, 0] (norm 1) and [0, 3] (norm 3): mean((0)^2, (2)^2) = 2.
    gp = Fz.gradient_penalty(lambda x: 0.5 * x.pow(2).sum(-1), real, fake, weight=10.0, alpha=alpha)
    assert gp.item() == pytest.approx(20.0)


def test_gradient_penalty_trains_the_critic_and_checks_shapes():
    lin = torch.nn.Linear(3, 1)
    gp = Fz.gradient_penalty(lambda x: lin(x).squeeze(-1), torch.randn(4, 3), torch.randn(4, 3))
    gp.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        Fz.gradient_penalty(lin, torch.randn(4, 3), torch.randn(5, 3))


def test_wgan_loss_kl_and_weighted_l1_by_hand():
    assert Fz.wgan_critic_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(-1.5)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * (1 + 0 + (2 - 1 - log 2))
    assert Fz.kl_to_standard_normal(mu, logvar).item() == pytest.approx(0.5 * (1 + 1 - math.log(2.0)))
    pred, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    # e = (1, 2); w = e^2 / ||e||_2 = (1, 4) / sqrt(5); loss = (1*1 + 4*2) / sqrt(5) (TF-VAEGAN's
    # WeightedL1; the old normaliser ||e^2||_2 = sqrt(17) gave 9 / sqrt(17))
    assert Fz.weighted_l1(pred, target).item() == pytest.approx(9.0 / math.sqrt(5.0))
    assert Fz.weighted_l1(target, target).item() == 0.0


def test_minmax_is_fitted_per_dimension():
    x = torch.tensor([[0.0, 10.0, 5.0], [2.0, 20.0, 5.0]])
    lo, hi = Fz.minmax_fit(x)
    scaled = Fz.minmax_apply(torch.tensor([[1.0, 15.0, 5.0], [4.0, 0.0, 5.0]]), lo, hi)
    torch.testing.assert_close(scaled, torch.tensor([[0.5, 0.5, 0.0], [2.0, -1.0, 0.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        Fz.minmax_fit(torch.empty(0, 3))


def test_pseudo_class_prior_counts_nearest_attributes():
    classes = torch.eye(3)
    pseudo = torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.0, 0.2], [0.0, 0.0, 1.0]])
    # votes (2, 0, 1) + 1 smoothing -> (3, 1, 2) / 6
    torch.testing.assert_close(Fz.pseudo_class_prior(pseudo, classes), torch.tensor([0.5, 1 / 6, 1 / 3]))


def test_eszsl_closed_form_solves_its_normal_equations_and_transfers():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(8, 4, generator=g)
    W = torch.randn(4, 12, generator=g)
    y = torch.arange(6).repeat_interleave(20)
    X = S[y] @ W + 0.05 * torch.randn(len(y), 12, generator=g)
    # Solved in float64, so the residual measures the algebra, not float32 rounding.
    Xd, Sd = X.double(), S[:6].double()
    V = Fz.eszsl_fit(Xd, y, Sd, gamma=1.0, lam=1.0)
    assert V.dtype == torch.float64
    Y = -torch.ones(len(y), 6, dtype=torch.float64)
    Y[torch.arange(len(y)), y] = 1
    lhs = (Xd.T @ Xd + torch.eye(12, dtype=torch.float64)) @ V @ (Sd.T @ Sd + torch.eye(4, dtype=torch.float64))
    assert_close_scaled(lhs, Xd.T @ Y @ Sd, rtol=1e-9)
    # Unseen classes 6, 7 are told apart from their attributes alone.
    y_u = torch.tensor([6, 7]).repeat_interleave(20)
    X_u = S[y_u] @ W
    pred = (X_u.double() @ V @ S[6:].T.double()).argmax(-1) + 6
    assert (pred == y_u).float().mean() > 0.9
