"""Seeded random projections (as APOLLO, arXiv 2412.05270, uses): no SVD, and only a seed is saved.

``random_dist="gaussian"``: entries N(0, 1/r), as APOLLO; ``"orthonormal"``: the Q factor of such a
matrix (orthonormal rows/columns, so back-projection is an exact orthogonal projection). A new seed is
drawn at every refresh from (matrix seed, refresh count); the basis is regenerated from it after loading.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import Projector

DISTRIBUTIONS = ("gaussian", "orthonormal")


def gaussian_basis(shape: tuple[int, int], rank: int, side: str, seed: int, dtype: torch.dtype,
                   device: torch.device) -> Tensor:
    """An r×n (right) or m×r (left) matrix with i.i.d. N(0, 1/r) entries from ``seed`` (generated on CPU)."""
    m, n = shape
    gen = torch.Generator().manual_seed(seed)
    size = (rank, n) if side == "right" else (m, rank)
    return (torch.randn(size, generator=gen, dtype=torch.float32) / math.sqrt(rank)).to(device=device, dtype=dtype)


def orthonormal_basis(shape: tuple[int, int], rank: int, side: str, seed: int, dtype: torch.dtype,
                      device: torch.device) -> Tensor:
    """A seeded basis with orthonormal rows (right) or columns (left)."""
    g = gaussian_basis(shape, rank, side, seed, torch.float32, torch.device("cpu"))
    q, _ = torch.linalg.qr(g.t() if side == "right" else g)  # (k×r), orthonormal columns
    return (q.t() if side == "right" else q).contiguous().to(device=device, dtype=dtype)


class RandomProjector(Projector):
    """Seeded Gaussian or orthonormal projection, resampled at every refresh; saves ``proj_seed`` only."""

    name = "random"
    stores_basis = False

    def refresh(self, grad: Tensor, rank: int, side: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        return {"proj_seed": int(seed)}

    def basis(self, saved: dict[str, Any], shape: tuple[int, int], rank: int, side: str, device: torch.device,
              dtype: torch.dtype, options: dict[str, Any]) -> Tensor:
        make = orthonormal_basis if options.get("random_dist", "gaussian") == "orthonormal" else gaussian_basis
        return make(shape, rank, side, int(saved["proj_seed"]), dtype, device)
