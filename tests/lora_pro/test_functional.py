"""The closed form against explicit float64 projectors built only here."""

import pytest
import scipy.linalg
import torch

from hf_clipadapt.lora_pro import functional as lorapro_fn
from hf_clipadapt.testing_utils import assert_close_scaled

D = torch.float64


def _random_pair(m=9, n=7, r=3, seed=0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, n, generator=g, dtype=dtype)
    B = torch.randn(m, r, generator=g, dtype=dtype)
    G = torch.randn(m, n, generator=g, dtype=dtype)  # the full-weight gradient
    return A, B, G


def _projectors(A, B):
    P_B = B @ torch.linalg.inv(B.T @ B) @ B.T
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    return P_B, P_A


@pytest.mark.parametrize("X", ["sylvester", None, "given"])
def test_equivalent_gradient_is_PBg_plus_complement_g_PA_for_any_X(X):
    A, B, G = _random_pair()
    s = 2.5
    gA, gB = s * B.T @ G, s * G @ A.T
    X = torch.randn(3, 3, dtype=D) if X == "given" else X
    gA_hat, gB_hat = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, X=X)
    P_B, P_A = _projectors(A, B)
    want = P_B @ G + (torch.eye(9, dtype=D) - P_B) @ G @ P_A
    got = lorapro_fn.equivalent_gradient(A, B, gA_hat, gB_hat, s)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_equivalent_gradient_definition():
    A, B, G = _random_pair()
    gA, gB = torch.randn_like(A), torch.randn_like(B)
    torch.testing.assert_close(lorapro_fn.equivalent_gradient(A, B, gA, gB, 0.5), 0.5 * (B @ gA + gB @ A))


def test_closed_form_matches_paper_formula():
    A, B, G = _random_pair(seed=1)
    s = 0.7
    gA, gB = s * B.T @ G, s * G @ A.T
    BtB_inv, AAt_inv = torch.linalg.inv(B.T @ B), torch.linalg.inv(A @ A.T)
    P_B, _ = _projectors(A, B)
    C = -(1 / s**2) * BtB_inv @ gA @ A.T
    X = torch.from_numpy(scipy.linalg.solve_sylvester((B.T @ B).numpy(), (A @ A.T).numpy(), C.numpy()))
    want_A = BtB_inv @ gA / s**2 + X @ A
    want_B = (torch.eye(9, dtype=D) - P_B) @ gB @ AAt_inv / s**2 - B @ X
    got_A, got_B = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0)
    torch.testing.assert_close(got_A, want_A, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(got_B, want_B, rtol=1e-9, atol=1e-11)


def test_sylvester_residual_is_tiny_in_float32_and_float64():
    for dtype, tol in ((torch.float32, 1e-6), (D, 1e-12)):
        g = torch.Generator().manual_seed(3)
        L1, L2 = torch.randn(5, 8, 5, generator=g), torch.randn(5, 8, 5, generator=g)
        P = (L1.mT @ L1).to(dtype)  # batch of 5 SPD 5×5
        Q = (L2.mT @ L2).to(dtype)
        C = torch.randn(5, 5, 5, generator=g).to(dtype)
        X = lorapro_fn.solve_sylvester_spd(P, Q, C)
        rel = (P @ X + X @ Q - C).norm() / C.norm()
        assert rel < tol, (dtype, rel)


def test_sylvester_solution_minimises_distance_to_raw_gradients():
    """X should minimise ||ĝA−gA||² + ||ĝB−gB||² over all r×r X. The objective is
    linear least squares in vec(X); solve it with an explicit design matrix."""
    A, B, G = _random_pair(m=8, n=6, r=2, seed=4)
    s = 1.3
    gA, gB = s * B.T @ G, s * G @ A.T
    a0, b0 = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0, X=None)  # X = 0
    r = 2
    cols = []
    for k in range(r * r):
        E = torch.zeros(r * r, dtype=D)
        E[k] = 1
        E = E.view(r, r)
        cols.append(torch.cat([(E @ A).flatten(), (-B @ E).flatten()]))
    M = torch.stack(cols, 1)
    target = torch.cat([(gA - a0).flatten(), (gB - b0).flatten()])
    x_star = torch.linalg.lstsq(M, target.unsqueeze(1)).solution.view(r, r)
    got_A, got_B = lorapro_fn.lorapro_project(A, B, gA, gB, s, damping=0.0)
    want_A, want_B = a0 + x_star @ A, b0 - B @ x_star
    torch.testing.assert_close(got_A, want_A, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got_B, want_B, rtol=1e-8, atol=1e-10)

    def objective(a, b):
        return (a - gA).pow(2).sum() + (b - gB).pow(2).sum()

    best = objective(got_A, got_B)
    for _ in range(20):  # and no perturbation of X does better
        P = 1e-3 * torch.randn(r, r, dtype=D)
        assert objective(got_A + P @ A, got_B - B @ P) > best


def test_batched_equals_loop_and_per_pair_scaling():
    g = torch.Generator().manual_seed(5)
    A, B = torch.randn(4, 3, 7, generator=g, dtype=D), torch.randn(4, 9, 3, generator=g, dtype=D)
    gA, gB = torch.randn_like(A), torch.randn_like(B)
    s = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=D)
    bA, bB = lorapro_fn.lorapro_project(A, B, gA, gB, s)
    for i in range(4):
        lA, lB = lorapro_fn.lorapro_project(A[i], B[i], gA[i], gB[i], float(s[i]))
        torch.testing.assert_close(bA[i], lA)
        torch.testing.assert_close(bB[i], lB)


def test_zero_B_step_follows_official_special_case():
    A, B, G = _random_pair(seed=6)
    B = torch.zeros_like(B)
    s = 2.0
    gA, gB = s * B.T @ G, s * G @ A.T  # gA is exactly 0 when B = 0
    got_A, got_B = lorapro_fn.lorapro_project(A, B, gA, gB, s)
    torch.testing.assert_close(got_A, gA)
    # solve vs. inverse of a random r×r Gram matrix: the error grows with its condition number
    assert_close_scaled(got_B, gB @ torch.linalg.inv(A @ A.T) / s**2, rtol=1e-6)
    assert torch.isfinite(got_B).all()


def test_low_precision_inputs_use_float32_math_and_keep_dtype():
    A, B, G = _random_pair(seed=7, dtype=torch.float32)
    gA, gB = B.T @ G, G @ A.T
    got = lorapro_fn.lorapro_project(A.bfloat16(), B.bfloat16(), gA.bfloat16(), gB.bfloat16(), 1.0)
    ref = lorapro_fn.lorapro_project(
        A.bfloat16().float(), B.bfloat16().float(), gA.bfloat16().float(), gB.bfloat16().float(), 1.0
    )
    assert got[0].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], ref[0].bfloat16())  # one rounding at the end only
    torch.testing.assert_close(got[1], ref[1].bfloat16())


def test_bad_inputs_raise_clear_errors():
    A, B, G = _random_pair()
    gA, gB = B.T @ G, G @ A.T
    with pytest.raises(ValueError, match="ranks differ"):
        lorapro_fn.lorapro_project(A, B[:, :2], gA, gB[:, :2], 1.0)
    with pytest.raises(ValueError, match="r = 0"):
        lorapro_fn.lorapro_project(A[:0], B[:, :0], gA[:0], gB[:, :0], 1.0)
    with pytest.raises(ValueError, match="gradient shapes"):
        lorapro_fn.lorapro_project(A, B, gA.T, gB, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        lorapro_fn.lorapro_project(A.flatten(), B, gA, gB, 1.0)
    with pytest.raises(ValueError, match="damping"):
        lorapro_fn.lorapro_project(A, B, gA, gB, 1.0, damping=-1.0)
    with pytest.raises(ValueError, match='"sylvester"'):
        lorapro_fn.lorapro_project(A, B, gA, gB, 1.0, X="eig")
    with pytest.raises(ValueError, match="r×r"):
        lorapro_fn.lorapro_project(A, B, gA, gB, 1.0, X=torch.zeros(2, 2, dtype=D))
    with pytest.raises(ValueError, match="singular"):
        lorapro_fn.solve_sylvester_spd(torch.zeros(3, 3), torch.zeros(3, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="C must be"):
        lorapro_fn.solve_sylvester_spd(torch.eye(3), torch.eye(2), torch.ones(2, 3))
