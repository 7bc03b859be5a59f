"""GaLore-AdamW: Adam on low-rank projections of the gradient.

"GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (Zhao et al., arXiv 2403.03507).
For an m×n gradient G and basis B (see :mod:`rankwise.optim.projectors`):

    R = project(G)  (r·max(m, n) numbers)     N = Adam(R)     W ← W − step_size·α·project_back(N)

with α = ``scale`` (paper default 0.25), the basis refreshed every ``update_gap`` steps (200). With the
exact-SVD projector and the same hyperparameters this reproduces ``galore_torch.GaLoreAdamW``
(tested to 1e-5 over a refresh); parameters in groups without ``rank`` get the same Adam, full-rank.

    groups = rankwise.optim.low_rank_groups(model, rank=128, update_gap=200, scale=0.25)
    opt = rankwise.optim.GaLoreAdamW(groups, lr=1e-2)
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .lowrank import LowRankAdam
from .projectors import project_back_add_


class GaLoreAdamW(LowRankAdam):
    """GaLore with Adam (module docstring); all options are :class:`~rankwise.optim.lowrank.LowRankAdam`'s."""

    default_scale = 0.25
    default_projector = "svd"

    def _apply_update(self, p: Tensor, grad: Tensor, low: Tensor, direction: Tensor, basis: Tensor, side: str,
                      size: float, state: dict[str, Any], group: dict[str, Any]) -> None:
        project_back_add_(p, direction, basis, side, alpha=-size * group["scale"])
