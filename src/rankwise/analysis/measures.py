"""Rank measures of one matrix: plain functions on a 2-D tensor (or its singular values).

Every measure accepts either a 2-D matrix ``W`` (m, n) or a 1-D tensor of its singular values
(any order), so a caller that already ran an SVD does not pay for another one. Arithmetic is
fp32 (fp64 stays fp64) whatever the input dtype, because half-precision SVDs are not
supported and lose the small singular values the measures are about.

Measures, for singular values σ₁ ≥ … ≥ σ_k ≥ 0:

* effective rank (Roy & Vetterli, "The effective rank: a measure of effective dimensionality",
  EUSIPCO 2007): exp(H(p)), pᵢ = σᵢ/Σσ, H the Shannon entropy. Equals r for r equal σ's.
* stable rank: ‖W‖_F² / ‖W‖₂² = Σσᵢ² / σ₁². Between 1 and rank(W).
* energy rank at level e: the smallest k with Σᵢ≤ₖ σᵢ² ≥ e·Σσᵢ² (how many directions carry
  a fraction e of the Frobenius energy); ``numerical_rank`` is it at e = 0.99, or a tolerance rank.
* WeLore rank ("From GaLore to WeLore", Jaiswal et al., arXiv 2407.11239): normalise
  s̃ᵢ = (σᵢ − σ_min)/(σ_max − σ_min) and keep the directions with s̃ᵢ ≥ τ.
* nuclear norm: Σσᵢ.
"""

from __future__ import annotations

import torch

from ..core.geometry import acc_dtype
from ..errors import ConfigError


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(acc_dtype(t.dtype)) if t.is_floating_point() else t.detach().to(torch.float32)


def singular_values(W: torch.Tensor, k: int | None = None, niter: int | None = None) -> torch.Tensor:
    """Singular values of a matrix (or of each matrix of a (..., m, n) batch), descending, fp32 (fp64 kept).

    Args:
        W: (m, n) or (..., m, n).
        k: keep only the top ``k`` (default: all min(m, n)).
        niter: if given, use a randomized SVD (``torch.svd_lowrank`` with ``q = k``, ``niter`` power
            iterations; "Finding structure with randomness", Halko et al., arXiv 0909.4061). It needs
            ``k`` (with ``k`` None, or ``k`` = min(m, n), the exact SVD runs anyway); it is much
            faster than the exact SVD when k ≪ min(m, n). Without it, the exact ``torch.linalg.svdvals``.

    Returns:
        (k,) or (..., k) singular values.
    """
    if W.dim() < 2:
        raise ConfigError(f"singular_values needs a matrix or a batch of matrices, got shape {tuple(W.shape)}")
    W = _as_float(W)
    full = min(W.shape[-2:])
    if k is not None and (k < 1 or int(k) != k):
        raise ConfigError(f"k={k!r} must be a positive integer")
    k = full if k is None else min(int(k), full)
    if niter is None or k >= full:
        return torch.linalg.svdvals(W)[..., :k]
    if niter < 0:
        raise ConfigError(f"niter={niter} must be ≥ 0 (power iterations of the randomized SVD)")
    # oversample by a few columns: the top-k values of a rank-(k+p) sketch are far more accurate
    q = min(k + 8, full)
    _, s, _ = torch.svd_lowrank(W, q=q, niter=niter)
    return s[..., :k]


def spectrum(W: torch.Tensor) -> torch.Tensor:
    """``W`` as descending singular values: a 1-D input is taken as the spectrum itself."""
    if W.dim() == 1:
        s = _as_float(W).abs()
        return torch.sort(s, descending=True).values
    if W.dim() != 2:
        raise ConfigError(f"expected a 2-D matrix or 1-D singular values, got shape {tuple(W.shape)}")
    return singular_values(W)


def effective_rank(W: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ/Σσ (0 for the zero matrix)."""
    s = spectrum(W)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def stable_rank(W: torch.Tensor) -> float:
    """‖W‖_F² / ‖W‖₂² (0 for the zero matrix)."""
    s = spectrum(W)
    if s.numel() == 0 or s[0] <= 0:
        return 0.0
    return float((s ** 2).sum() / s[0] ** 2)


def energy_rank(W: torch.Tensor, energy: float = 0.9) -> int:
    """Smallest k such that the top k singular values hold a fraction ``energy`` of Σσᵢ² (0 for W = 0)."""
    if not 0.0 < energy <= 1.0:
        raise ConfigError(f"energy={energy} must be in (0, 1]")
    s = spectrum(W)
    e = s.double() ** 2
    total = float(e.sum())
    if total <= 0:
        return 0
    cum = torch.cumsum(e, 0) / total
    # a tiny slack so that energy=1.0 does not miss the last direction to rounding
    return int(torch.searchsorted(cum, torch.tensor([energy - 1e-12], dtype=cum.dtype)).item()) + 1


def numerical_rank(W: torch.Tensor, energy: float = 0.99, tol: float | None = None) -> int:
    """The rank that matters numerically.

    Args:
        W: matrix or singular values.
        energy: with ``tol`` None, the energy rank at this level (default 99%).
        tol: if given, instead count σᵢ > tol·σ₁ (the classical relative-tolerance rank).
    """
    if tol is None:
        return energy_rank(W, energy)
    if tol < 0:
        raise ConfigError(f"tol={tol} must be ≥ 0")
    s = spectrum(W)
    if s.numel() == 0 or s[0] <= 0:
        return 0
    return int((s > tol * s[0]).sum())


def welore_rank(W: torch.Tensor, tau: float = 0.1) -> int:
    """WeLore's rank: how many normalised singular values (σ − σ_min)/(σ_max − σ_min) are ≥ τ.

    A flat spectrum (σ_max = σ_min) keeps every direction.
    """
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"tau={tau} must be in [0, 1]")
    s = spectrum(W)
    if s.numel() == 0:
        return 0
    lo, hi = s.min(), s.max()
    if hi - lo <= 0:
        return int(s.numel()) if hi > 0 else 0
    return int(((s - lo) / (hi - lo) >= tau).sum())


def nuclear_norm(W: torch.Tensor) -> float:
    """Σσᵢ."""
    return float(spectrum(W).sum())


def _orthonormal(X: torch.Tensor) -> torch.Tensor:
    Q, _ = torch.linalg.qr(_as_float(X))
    return Q


def principal_angles(A: torch.Tensor, B: torch.Tensor, k: int | None = None, basis: bool = False) -> torch.Tensor:
    """Principal angles (radians, ascending) between two subspaces.

    By default ``A`` and ``B`` are matrices of the same height and the subspaces are the spans of
    their top-``k`` left singular vectors (all columns' span when ``k`` is None). With ``basis=True``
    the columns of ``A`` and ``B`` themselves span the subspaces (orthonormalised by QR).
    Angles are arccos of the singular values of Q_Aᵀ Q_B (Björck & Golub, 1973).

    Returns:
        (min(dim A, dim B),) angles in [0, π/2].
    """
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[0]:
        raise ConfigError(f"principal_angles needs two matrices with the same number of rows, got "
                          f"{tuple(A.shape)} and {tuple(B.shape)}")
    if basis:
        Qa, Qb = _orthonormal(A), _orthonormal(B)
    else:
        Qa, Qb = top_left_vectors(A, k), top_left_vectors(B, k)
    dtype = torch.promote_types(Qa.dtype, Qb.dtype)
    c = torch.linalg.svdvals(Qa.to(dtype).t() @ Qb.to(dtype)).clamp(0.0, 1.0)
    return torch.sort(torch.arccos(c)).values


def top_left_vectors(W: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """The top-``k`` left singular vectors of W, (m, k), fp32 (fp64 kept)."""
    U, _, _ = torch.linalg.svd(_as_float(W), full_matrices=False)
    return U if k is None else U[:, :k]


def intruder_dimensions(W0: torch.Tensor, W: torch.Tensor, k: int = 10, eps: float = 0.5,
                        return_indices: bool = False) -> int | list[int]:
    """Intruder dimensions of a fine-tuned weight.

    "LoRA vs Full Fine-tuning: An Illusion of Equivalence" (Shuttleworth et al., arXiv 2410.21228):
    a top-``k`` left singular vector u of the tuned ``W`` is an intruder when its similarity to
    every left singular vector of the base ``W0`` is low, max_j |⟨u, u⁰_j⟩| < ``eps``.

    Args:
        W0: base weight (m, n); W: tuned weight, same shape.
        k: how many top singular vectors of W are examined.
        eps: similarity threshold.
        return_indices: return the intruders' ranks (0-based indices into W's spectrum) instead of the count.
    """
    if W0.shape != W.shape or W.dim() != 2:
        raise ConfigError(f"intruder_dimensions needs two matrices of the same shape, got {tuple(W0.shape)} "
                          f"and {tuple(W.shape)}")
    if not 0.0 < eps <= 1.0:
        raise ConfigError(f"eps={eps} must be in (0, 1]")
    U0 = top_left_vectors(W0)
    U = top_left_vectors(W, k)
    sim = (U.t() @ U0.to(U.dtype)).abs().max(dim=1).values  # (k,) best match of each tuned vector
    idx = [int(i) for i in torch.nonzero(sim < eps).flatten()]
    return idx if return_indices else len(idx)


