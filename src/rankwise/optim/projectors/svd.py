"""Exact-SVD projector (GaLore, arXiv 2403.03507): the top-r singular vectors of the gradient.

The SVD always runs in fp32 or wider (fp64 gradients stay fp64), whatever the gradient's dtype
(LAPACK/cuSOLVER have no half-precision SVD, and fp16 gradients lose the small singular values); the
basis is stored in the gradient's dtype as galore-torch does. If the SVD fails (no convergence, a
non-finite gradient), the projector says so with a warning and falls back: to a randomized SVD of
the same gradient, or, when the gradient itself is not finite, to the previous basis (the caller keeps
it) or a seeded random orthonormal basis.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from .base import Projector, at_least_fp32
from .random import orthonormal_basis
from .rsvd import randomized_basis


def svd_basis(grad32: Tensor, rank: int, side: str) -> Tensor:
    """Top-r singular vectors of a fp32 matrix: Vh[:r] (r×n) for right, U[:, :r] (m×r) for left."""
    u, _, vh = torch.linalg.svd(grad32, full_matrices=False)
    return vh[:rank] if side == "right" else u[:, :rank]


class SVDProjector(Projector):
    """GaLore's projector: B from the exact SVD of G (fp32), refreshed every ``update_gap`` steps."""

    name = "svd"
    stores_basis = True

    def refresh(self, grad: Tensor, rank: int, side: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        g32 = at_least_fp32(grad)
        if not bool(torch.isfinite(g32).all()):
            warnings.warn("rankwise svd projector: the gradient has NaN/Inf entries, so its SVD is meaningless; "
                          "keeping the previous projection (or a random orthonormal one on the first step)",
                          RuntimeWarning, stacklevel=3)
            return {}
        try:
            basis = svd_basis(g32, rank, side)
            if not bool(torch.isfinite(basis).all()):
                raise RuntimeError("the SVD returned non-finite singular vectors")
        except RuntimeError as e:  # torch.linalg.LinAlgError subclasses RuntimeError
            warnings.warn(f"rankwise svd projector: exact SVD of a {tuple(grad.shape)} gradient failed ({e}); "
                          f"falling back to a randomized SVD (niter={options.get('niter', 2)}) for this refresh",
                          RuntimeWarning, stacklevel=3)
            try:
                basis = randomized_basis(g32, rank, side, seed, int(options.get("niter", 2)))
            except RuntimeError as e2:
                warnings.warn(f"rankwise svd projector: the randomized SVD failed too ({e2}); "
                              "keeping the previous projection (or a random orthonormal one on the first step)",
                              RuntimeWarning, stacklevel=3)
                return {}
        return {"proj": basis.to(grad.dtype).contiguous()}

    @staticmethod
    def emergency(grad: Tensor, rank: int, side: str, seed: int) -> dict[str, Any]:
        """A seeded random orthonormal basis, for a first refresh that has nothing to fall back on."""
        m, n = grad.shape
        return {"proj": orthonormal_basis((m, n), rank, side, seed, torch.float32, grad.device).to(grad.dtype)}
