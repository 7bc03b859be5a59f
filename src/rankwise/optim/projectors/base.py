"""The projector interface: how a low-rank optimizer maps an m×n gradient to r dimensions and back.

A projector owns one basis per matrix, refreshed every ``update_gap`` steps. The side follows GaLore
(arXiv 2403.03507): for G of shape m×n,

* m ≥ n, side ``"right"``: basis B is r×n and R = G·Bᵀ (m×r); back-projection is N·B;
* m < n,  side ``"left"``:  basis B is m×r and R = Bᵀ·G (r×n); back-projection is B·N;

so the projected gradient and the Adam moments are r·max(m, n) and the basis r·min(m, n).

What a projector saves is only what it needs to rebuild its basis (the basis itself for SVD, the
column indices for DCT, a seed for random projections), as plain tensors and numbers, so optimizer
state loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor


def at_least_fp32(t: Tensor) -> Tensor:
    """``t`` in fp32 if it is a half type (fp16/bf16), else unchanged (fp64 stays fp64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def side_for(shape: tuple[int, ...]) -> str:
    """``"right"`` when m ≥ n (project columns), ``"left"`` when m < n: galore-torch's ``proj_type="std"``."""
    return "right" if shape[0] >= shape[1] else "left"


def effective_rank(rank: int, shape: tuple[int, ...]) -> int:
    """The rank actually used: at most min(m, n)."""
    return min(int(rank), int(shape[0]), int(shape[1]))


def project(grad: Tensor, basis: Tensor, side: str) -> Tensor:
    """R = G·Bᵀ (right, m×r) or Bᵀ·G (left, r×n)."""
    return grad @ basis.t() if side == "right" else basis.t() @ grad


def project_back_add_(out: Tensor, low: Tensor, basis: Tensor, side: str, alpha: float) -> Tensor:
    """out += alpha · back(low), fused (addmm), never materialising back(low) as a separate m×n tensor."""
    if side == "right":
        return out.addmm_(low, basis, alpha=alpha)  # (m×r)·(r×n)
    return out.addmm_(basis, low, alpha=alpha)  # (m×r)·(r×n)


def project_back(low: Tensor, basis: Tensor, side: str) -> Tensor:
    """back(low) = low·B (right) or B·low (left), an m×n tensor (reference path and tests)."""
    return low @ basis if side == "right" else basis @ low


def leading_vector(basis: Tensor, side: str) -> Tensor:
    """The first basis vector (row 0 for right, column 0 for left), unit length, fp32."""
    v = (basis[0] if side == "right" else basis[:, 0]).float()
    return v / v.norm().clamp_min(1e-30)


def to_right_layout(basis: Tensor, side: str) -> Tensor:
    """The basis as r×k rows (k = the projected dimension), whatever the side."""
    return basis if side == "right" else basis.t()


class Projector:
    """One way of choosing the subspace. Subclasses are stateless; per-matrix data lives in the optimizer state.

    Attributes:
        name: the name used in configs (``projector="svd"``).
        stores_basis: True when the saved entry is the basis itself (``"proj"``); False when the basis
            is rebuilt from smaller data (indices, a seed) by :meth:`basis`.
    """

    name: ClassVar[str] = ""
    stores_basis: ClassVar[bool] = True

    def refresh(self, grad: Tensor, rank: int, side: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
        """Choose a new subspace for ``grad`` (m×n, any float dtype).

        Args:
            grad: the current gradient.
            rank: r (already ≤ min(m, n)).
            side: ``"right"`` or ``"left"`` (see :func:`side_for`).
            seed: a seed for any randomness, unique per matrix and refresh (so resumed runs repeat it).
            options: the param group (``niter``, ``random_dist``, …).

        Returns:
            The state entries that define the basis (plain tensors and numbers).
        """
        raise NotImplementedError

    def basis(self, saved: dict[str, Any], shape: tuple[int, int], rank: int, side: str, device: torch.device,
              dtype: torch.dtype, options: dict[str, Any]) -> Tensor:
        """The basis (r×n for right, m×r for left) from the entries :meth:`refresh` returned."""
        return saved["proj"]
