"""Singular values of many matrices at once: one batched SVD call per group of equal shapes.

A transformer's layers come in a handful of shapes (q/k/v/o, up, down, …), so stacking the
matrices of each shape into a (L, m, n) batch turns dozens of small LAPACK calls into a few
batched ones. Batches are cut into chunks of at most ``max_bytes`` so that stacking never
doubles the memory of a large model. :func:`per_layer_singular_values` is the plain reference.
"""

from __future__ import annotations

import torch

from .measures import singular_values


def batched_singular_values(mats: dict[str, torch.Tensor], k: int | None = None, niter: int | None = None,
                            max_bytes: int = 256 * 2 ** 20) -> dict[str, torch.Tensor]:
    """``{name: (min(m, n),) or (k,) singular values}`` for ``{name: (m, n) matrix}``, descending.

    Args:
        mats: matrices (any float dtype; computed in fp32, fp64 kept).
        k, niter: as in :func:`rankwise.analysis.singular_values` (``niter`` switches to the
            randomized SVD, which needs ``k``).
        max_bytes: largest stacked batch.
    """
    groups: dict[tuple, list[str]] = {}
    for name, m in mats.items():
        groups.setdefault((tuple(m.shape), m.dtype, m.device), []).append(name)
    out: dict[str, torch.Tensor] = {}
    for (shape, dtype, _), names in groups.items():
        per = max(1, shape[0] * shape[1] * max(torch.finfo(dtype).bits // 8, 4))
        step = max(1, max_bytes // per)
        for i in range(0, len(names), step):
            chunk = names[i:i + step]
            stack = torch.stack([mats[n] for n in chunk])  # (L, m, n)
            s = singular_values(stack, k=k, niter=niter)     # (L, k)
            for j, n in enumerate(chunk):
                out[n] = s[j]
    return {n: out[n] for n in mats}


def per_layer_singular_values(mats: dict[str, torch.Tensor], k: int | None = None,
                              niter: int | None = None) -> dict[str, torch.Tensor]:
    """Reference path: one SVD per matrix."""
    return {n: singular_values(m, k=k, niter=niter) for n, m in mats.items()}
