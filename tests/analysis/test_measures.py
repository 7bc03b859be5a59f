"""Rank measures against closed forms: diagonal matrices, known ranks, orthogonal matrices."""

import math

import pytest
import torch

from rankwise import analysis
from rankwise.errors import ConfigError


def _with_spectrum(s: list[float], m: int = 12, n: int = 9, seed: int = 0) -> torch.Tensor:
    """U·diag(s)·Vᵀ with random orthonormal U (m×k), V (n×k): a matrix with known singular values."""
    g = torch.Generator().manual_seed(seed)
    k = len(s)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return U @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ V.t()


def test_singular_values_of_a_known_spectrum_descending_fp64_kept():
    W = _with_spectrum([5.0, 3.0, 1.0, 0.5])
    s = analysis.singular_values(W)
    assert s.dtype == torch.float64 and s.shape == (9,)
    torch.testing.assert_close(s[:4], torch.tensor([5.0, 3.0, 1.0, 0.5], dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(s[4:].abs().max()) < 1e-12


def test_half_precision_input_is_measured_in_fp32():
    W = _with_spectrum([4.0, 2.0]).to(torch.bfloat16)
    s = analysis.singular_values(W)
    assert s.dtype == torch.float32
    torch.testing.assert_close(s[:2], torch.tensor([4.0, 2.0]), atol=0.05, rtol=0)


def test_randomized_svd_matches_exact_top_k():
    torch.manual_seed(0)
    W = _with_spectrum([10.0, 8.0, 6.0, 4.0, 2.0, 1.0, 0.5, 0.25], m=80, n=60).float()
    W = W + 1e-4 * torch.randn(80, 60)
    exact = analysis.singular_values(W, k=4)
    approx = analysis.singular_values(W, k=4, niter=4)
    torch.testing.assert_close(approx, exact, atol=1e-3, rtol=1e-4)


def test_effective_rank_closed_forms():
    # r equal singular values: exp(H) = r exactly
    assert analysis.effective_rank(_with_spectrum([2.0] * 5)) == pytest.approx(5.0, abs=1e-9)
    # an orthogonal n×n matrix has effective rank n
    Q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64))
    assert analysis.effective_rank(Q) == pytest.approx(7.0, abs=1e-9)
    # diagonal [3, 1]: p = (3/4, 1/4), H = −Σ p log p
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected = math.exp(float(-(p * p.log()).sum()))
    assert analysis.effective_rank(torch.diag(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64))) == pytest.approx(
        expected, abs=1e-12)
    assert analysis.effective_rank(torch.zeros(3, 4)) == 0.0


def test_stable_rank_nuclear_norm_and_spectrum_input():
    s = [4.0, 2.0, 1.0]
    W = _with_spectrum(s)
    assert analysis.stable_rank(W) == pytest.approx((16 + 4 + 1) / 16, abs=1e-12)
    assert analysis.nuclear_norm(W) == pytest.approx(7.0, abs=1e-12)
    # a 1-D input is taken as the spectrum itself, in any order
    assert analysis.stable_rank(torch.tensor([1.0, 4.0, 2.0])) == pytest.approx(21 / 16)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert analysis.stable_rank(Q) == pytest.approx(6.0, abs=1e-9)


def test_energy_and_numerical_rank():
    s = torch.tensor([3.0, 2.0, 1.0, 0.1], dtype=torch.float64)  # energies 9, 4, 1, 0.01 of 14.01
    assert analysis.energy_rank(s, 0.5) == 1          # 9/14.01 = 0.642
    assert analysis.energy_rank(s, 0.9) == 2          # 13/14.01 = 0.928
    assert analysis.energy_rank(s, 0.99) == 3         # 14/14.01 = 0.9993
    assert analysis.energy_rank(s, 1.0) == 4
    assert analysis.numerical_rank(s) == 3            # default: 99 % energy
    assert analysis.numerical_rank(s, tol=0.2) == 3   # σ > 0.2·σ₁ = 0.6
    assert analysis.numerical_rank(s, tol=0.01) == 4
    W = _with_spectrum([1.0] * 3, m=10, n=10)        # exactly rank 3
    assert analysis.numerical_rank(W, tol=1e-8) == 3
    assert analysis.energy_rank(torch.zeros(4, 4)) == 0


def test_welore_rank_normalised_threshold():
    s = torch.tensor([10.0, 5.5, 1.9, 1.0])  # normalised: 1, 0.5, 0.1, 0
    assert analysis.welore_rank(s, 0.5) == 2
    assert analysis.welore_rank(s, 0.09) == 3
    assert analysis.welore_rank(s, 0.0) == 4
    assert analysis.welore_rank(torch.ones(5), 0.3) == 5  # flat spectrum keeps everything


def test_principal_angles_closed_form():
    # span(e1, e2) vs span(e1, cos θ e2 + sin θ e3): angles 0 and θ
    theta = 0.3
    A = torch.zeros(4, 2, dtype=torch.float64)
    A[0, 0] = A[1, 1] = 1
    B = torch.zeros(4, 2, dtype=torch.float64)
    B[0, 0] = 1
    B[1, 1], B[2, 1] = math.cos(theta), math.sin(theta)
    ang = analysis.principal_angles(A, B, basis=True)
    torch.testing.assert_close(ang, torch.tensor([0.0, theta], dtype=torch.float64), atol=1e-7, rtol=0)
    # orthogonal subspaces: π/2
    C = torch.zeros(4, 1, dtype=torch.float64)
    C[3, 0] = 1
    assert float(analysis.principal_angles(A, C, basis=True)[0]) == pytest.approx(math.pi / 2)
    # same matrix: top-k subspaces coincide
    W = _with_spectrum([3.0, 2.0, 1.0])
    assert float(analysis.principal_angles(W, 2 * W, k=3).max()) < 1e-6


def test_intruder_dimensions_planted_intruder():
    g = torch.Generator().manual_seed(0)
    m = n = 20
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.linspace(10, 1, m, dtype=torch.float64)
    W0 = U @ torch.diag(s) @ V.t()
    # a small update that rescales existing directions: no intruder
    W_scaled = U @ torch.diag(s * 1.1) @ V.t()
    assert analysis.intruder_dimensions(W0, W_scaled) == 0
    # plant a new direction u* spread evenly over all base left vectors (|cos| = 1/√m ≈ 0.22 each), σ = 12
    u_star = U @ (torch.ones(m, dtype=torch.float64) / math.sqrt(m))
    v_star = V[:, -1]  # along the weakest input direction, so it does not merge with a strong base direction
    W = W0 + 12.0 * torch.outer(u_star, v_star)
    idx = analysis.intruder_dimensions(W0, W, k=10, eps=0.5, return_indices=True)
    assert len(idx) == 1 and idx[0] <= 1
    assert analysis.intruder_dimensions(W0, W, k=10, eps=0.1) == 0  # 0.22 > 0.1: not an intruder at ε = 0.1


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="energy"):
        analysis.energy_rank(torch.eye(3), 1.5)
    with pytest.raises(ConfigError, match="tau"):
        analysis.welore_rank(torch.eye(3), -0.1)
    with pytest.raises(ConfigError, match="same shape"):
        analysis.intruder_dimensions(torch.eye(3), torch.eye(4))
    with pytest.raises(ConfigError, match="matrix"):
        analysis.singular_values(torch.ones(3))
    with pytest.raises(ConfigError, match="same number of rows"):
        analysis.principal_angles(torch.eye(3), torch.eye(4))
