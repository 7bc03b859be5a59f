"""DCT column selection (as in ISTA-DASLab's ``dct_adamw``; "SVD-free low-rank adaptive gradient
optimization", Modoranu et al., arXiv 2505.17967): a fixed orthonormal DCT-II basis D (k×k, k the
projected dimension) and, at each refresh, the r columns of D with the largest ‖G·D‖ column norms (right;
‖Dᵀ·G‖ row norms for left). Only the r indices are saved; D is rebuilt (and cached) from its size.

No SVD: a refresh is one m×n×k matrix product and a top-k, so it is much cheaper than an exact SVD.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import Projector, at_least_fp32

_CACHE: dict[tuple[int, str, torch.dtype], Tensor] = {}


def dct_matrix(k: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """The orthonormal DCT-II matrix D (k×k): column j is cos(π(i+½)j/k), scaled so DᵀD = I (cached)."""
    key = (k, str(device), dtype)
    if key not in _CACHE:
        i = torch.arange(k, dtype=torch.float64)[:, None]
        j = torch.arange(k, dtype=torch.float64)[None, :]
        d = torch.cos(math.pi * (i + 0.5) * j / k) * math.sqrt(2.0 / k)
        d[:, 0] = 1.0 / math.sqrt(k)
        _CACHE[key] = d.to(device=device, dtype=dtype)
    return _CACHE[key]


class DCTProjector(Projector):
    """Selects r DCT columns by gradient energy; saves ``proj_idx`` (r int64 indices)."""

    name = "dct"
    stores_basis = False

    def refresh(self, grad: Tensor, rank: int, side: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        g = at_least_fp32(grad)
        if side == "right":
            scores = (g @ dct_matrix(g.shape[1], g.device, g.dtype)).norm(dim=0)  # (n,)
        else:
            scores = (dct_matrix(g.shape[0], g.device, g.dtype).t() @ g).norm(dim=1)  # (m,)
        idx = torch.topk(scores, rank, sorted=True).indices
        return {"proj_idx": idx.to(torch.int64).cpu()}

    def basis(self, saved: dict[str, Any], shape: tuple[int, int], rank: int, side: str, device: torch.device,
              dtype: torch.dtype, options: dict[str, Any]) -> Tensor:
        k = shape[1] if side == "right" else shape[0]
        cols = dct_matrix(k, device, dtype).index_select(1, saved["proj_idx"].to(device))  # (k×r)
        return cols.t().contiguous() if side == "right" else cols.contiguous()
