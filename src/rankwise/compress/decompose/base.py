"""The shared form of every decomposition: a truncated SVD of a transformed weight.

Each method rewrites the (m × n) weight as W' = D · W · T with D (m × m) and T (n × n) invertible,
takes the SVD W' = U S Vᵀ, and keeps the top k directions:

    W ≈ W_k = D⁻¹ U_k S_k V_kᵀ T⁻¹ = B · A,   B = D⁻¹ U_k √S_k  (m × k),   A = √S_k V_kᵀ T⁻¹  (k × n).

By Eckart–Young, W_k minimises ‖D (W − W_k) T‖_F over rank-k matrices, and that minimum is the
norm of the dropped singular values, ‖σ_{k+1:}‖₂ — the *predicted error* in the method's own metric
(weight error for SVD, activation error for SVD-LLM, …).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Spectrum:
    """A layer's decomposition, truncatable at any rank.

    Attributes:
        left: D⁻¹ U √S, (m, p) with p = min(m, n).
        right: √S Vᵀ T⁻¹, (p, n).
        sigma: singular values of the transformed weight W', (p,), descending.
        method: the decomposition that produced it.
    """

    left: torch.Tensor
    right: torch.Tensor
    sigma: torch.Tensor
    method: str

    def factors(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) with B (m, k) and A (k, n), so that W ≈ B @ A."""
        return self.left[:, :k], self.right[:k]

    def reconstruct(self, k: int) -> torch.Tensor:
        """W_k = B @ A (m, n); planning/sensitivity only, never in a forward pass."""
        b, a = self.factors(k)
        return b @ a

    def error(self, k: int) -> float:
        """‖σ_{k+1:}‖₂: the error of the rank-k truncation in the method's metric."""
        return float(self.sigma[k:].pow(2).sum().sqrt())

    def relative_error(self, k: int) -> float:
        """error(k) / ‖σ‖₂ (0 = exact, 1 = everything dropped)."""
        total = float(self.sigma.pow(2).sum().sqrt())
        return self.error(k) / total if total > 0 else 0.0


def transformed_svd(weight: torch.Tensor, method: str, row_scale: torch.Tensor | None = None,
                    col_scale: torch.Tensor | None = None, col_factor: torch.Tensor | None = None) -> Spectrum:
    """SVD of D·W·T with D = diag(row_scale), T = diag(col_scale) or a lower-triangular ``col_factor``.

    Args:
        weight: W, (m, n); computed in float64.
        row_scale: positive (m,) diagonal of D (FWSVD), or None for D = I.
        col_scale: positive (n,) diagonal of T (ASVD), or None.
        col_factor: lower-triangular (n, n) L with T = L (SVD-LLM's Cholesky factor), or None.
    """
    w = weight.detach().to(torch.float64)  # (m, n)
    if row_scale is not None:
        w = row_scale[:, None] * w
    if col_scale is not None:
        w = w * col_scale[None, :]
    if col_factor is not None:
        w = w @ col_factor
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # (m, p), (p,), (p, n)
    root = s.sqrt()
    left = u * root[None, :]  # (m, p)
    if row_scale is not None:
        left = left / row_scale[:, None]
    if col_factor is not None:
        # right = √S Vᵀ L⁻¹ = (L⁻ᵀ V √S)ᵀ, one triangular solve instead of an inverse
        right = torch.linalg.solve_triangular(col_factor.T, (vh.T * root[None, :]), upper=True).T
    else:
        right = vh * root[:, None]  # (p, n)
        if col_scale is not None:
            right = right / col_scale[None, :]
    return Spectrum(left, right, s, method)
