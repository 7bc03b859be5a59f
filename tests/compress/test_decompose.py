"""Exact identities of the decompositions (closed forms), and the whitening's failure modes."""

import pytest
import torch

from rankwise.compress import CalibrationError
from rankwise.compress.decompose import asvd, fwsvd, svd, svd_llm, whitening

G = torch.Generator().manual_seed(0)
W = torch.randn(8, 12, generator=G, dtype=torch.float64)
X = torch.randn(12, 50, generator=G, dtype=torch.float64) * torch.linspace(0.1, 3, 12, dtype=torch.float64)[:, None]
COV = X @ X.T
FISHER = torch.rand(8, generator=G, dtype=torch.float64) + 0.1
ABS = X.abs().mean(1)


def spectra():
    return {"svd": svd(W), "fwsvd": fwsvd(W, FISHER), "asvd": asvd(W, ABS), "svd-llm": svd_llm(W, COV, damping=0)}


@pytest.mark.parametrize("name", ["svd", "fwsvd", "asvd", "svd-llm"])
def test_full_rank_reconstructs_the_weight(name):
    sp = spectra()[name]
    assert torch.allclose(sp.reconstruct(8), W, atol=1e-10)
    b, a = sp.factors(3)
    assert b.shape == (8, 3) and a.shape == (3, 12)


def test_svd_spectrum_and_weight_error_match_torch():
    sp = svd(W)
    assert torch.allclose(sp.sigma, torch.linalg.svdvals(W), atol=1e-12)
    for k in range(9):
        assert abs(torch.linalg.matrix_norm(W - sp.reconstruct(k)) - sp.error(k)) < 1e-10


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_whitened_truncation_activation_error_equals_dropped_singular_values(k):
    sp = svd_llm(W, COV, damping=0)
    activation_error = torch.linalg.matrix_norm((W - sp.reconstruct(k)) @ X)
    assert abs(activation_error - sp.error(k)) < 1e-9 * sp.error(0)
    assert abs(activation_error - torch.linalg.svdvals(W @ torch.linalg.cholesky(COV))[k:].norm()) < 1e-9 * sp.error(0)


def test_damped_whitening_is_a_ridge_identity():
    damping = 0.05
    sp = svd_llm(W, COV, damping=damping)
    lam = damping * COV.diagonal().mean()
    d = W - sp.reconstruct(4)
    lhs = torch.linalg.matrix_norm(d @ X) ** 2 + lam * torch.linalg.matrix_norm(d) ** 2
    assert abs(lhs.sqrt() - sp.error(4)) < 1e-9 * sp.error(0)


def test_fwsvd_and_asvd_minimise_their_weighted_errors():
    k = 3
    f, a = fwsvd(W, FISHER), asvd(W, ABS, alpha=0.5)
    assert abs(torch.linalg.matrix_norm(FISHER.sqrt()[:, None] * (W - f.reconstruct(k))) - f.error(k)) < 1e-10
    assert abs(torch.linalg.matrix_norm((W - a.reconstruct(k)) * ABS.sqrt()[None, :]) - a.error(k)) < 1e-10
    # Eckart–Young in the weighted metric: beats plain SVD's truncation there
    plain = svd(W).reconstruct(k)
    assert f.error(k) <= torch.linalg.matrix_norm(FISHER.sqrt()[:, None] * (W - plain)) + 1e-12


def test_singular_covariance_raises_without_damping_and_warns_with_it():
    few = X[:, :5]  # 5 tokens, 12 inputs: rank-5 covariance
    with pytest.raises(CalibrationError, match="singular"), pytest.warns(UserWarning, match="5 calibration tokens"):
        svd_llm(W, few @ few.T, damping=0, name="layer.q", tokens=5)
    with pytest.warns(UserWarning, match="5 calibration tokens for 12 inputs"):
        sp = svd_llm(W, few @ few.T, damping=1e-3, name="layer.q", tokens=5)
    assert torch.isfinite(sp.left).all() and torch.isfinite(sp.right).all()


def test_cholesky_failure_falls_back_to_more_damping_with_a_message():
    cov = torch.diag(torch.tensor([1.0, 1.0, -1e-3], dtype=torch.float64))  # indefinite (round-off in real data)
    with pytest.warns(UserWarning, match="falling back to damping"):
        low = whitening(cov, damping=1e-4, name="blk.mlp")
    assert torch.allclose(low @ low.T, cov + 1e-2 * cov.diagonal().mean() * torch.eye(3, dtype=torch.float64))


def test_degenerate_statistics_raise_clear_errors():
    with pytest.raises(CalibrationError, match="all zero"):
        whitening(torch.zeros(3, 3), name="x")
    with pytest.raises(CalibrationError, match="need_fisher"):
        fwsvd(W, None, "x")
    with pytest.raises(CalibrationError, match="all zero"):
        asvd(W, torch.zeros(12), name="x")
