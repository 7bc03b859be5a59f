"""Randomized-SVD projector: ``torch.svd_lowrank`` (Halko, Martinsson & Tropp, arXiv 0909.4061).

A range finder with ``niter`` power iterations costs O(m·n·(r+p)) instead of the O(m·n·min(m, n)) of
an exact SVD, which is what makes refreshes of large matrices fast. Its random test matrix is drawn
under a seed unique to the matrix and the refresh, so a resumed run repeats the same bases exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Projector, at_least_fp32

OVERSAMPLE = 8


def randomized_basis(grad32: Tensor, rank: int, side: str, seed: int, niter: int) -> Tensor:
    """Approximate top-r singular vectors of a fp32 matrix (same layout as the exact ``svd_basis``)."""
    q = min(rank + OVERSAMPLE, *grad32.shape)
    devices = [grad32.device] if grad32.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeded, without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        u, _, v = torch.svd_lowrank(grad32, q=q, niter=niter)
    return v[:, :rank].t() if side == "right" else u[:, :rank]


class RandomizedSVDProjector(Projector):
    """Top-r subspace from ``torch.svd_lowrank(G, q=r+8, niter)``; stores the basis like the SVD projector."""

    name = "rsvd"
    stores_basis = True

    def refresh(self, grad: Tensor, rank: int, side: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        basis = randomized_basis(at_least_fp32(grad), rank, side, seed, int(options.get("niter", 2)))
        return {"proj": basis.to(grad.dtype).contiguous()}
