"""Fira: GaLore plus a norm-scaled full-rank residual.

"Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?" (Chen et al., arXiv 2410.01623).
GaLore's update keeps only the projected part of the gradient; Fira adds the residual, scaled channel-wise
by how much Adam rescaled the projected part, with a limiter on its norm growth:

    R = project(G),  N = Adam(R)
    S = G − α·project_back(R)                                   (the residual; α = ``scale``)
    φ_i = ‖N_i‖ / (‖R_i‖ + 1e-8)      per channel i of the full dimension (rows of R when m ≥ n, else columns)
    S ← φ ⊙ S;   if ‖S‖ > γ·‖S_prev‖:  S ← S · γ‖S_prev‖/‖S‖          (norm-growth limiter, γ = 1.01)
    W ← W − step_size·(α·project_back(N) + S)

The residual subtracts α·P·R, not P·R: this is the official implementation's behaviour (xichen-fy/Fira,
whose projector multiplies by α on the way back), which this module follows; METHODS.md writes S = G − P·R.
The limiter's reference norm ‖S_prev‖ is stored as the plain float ``limiter_norm`` (the limited norm).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .lowrank import LowRankAdam
from .projectors import project_back_add_

EPS = 1e-8


def channel_ratio(direction: Tensor, low: Tensor, side: str) -> Tensor:
    """φ = ‖N_i‖/(‖R_i‖+1e-8) per channel of the full-size dimension, shaped to broadcast over an m×n matrix."""
    if side == "right":  # N, R: m×r → one factor per row
        return (direction.norm(dim=1) / (low.norm(dim=1) + EPS)).unsqueeze(1)
    return (direction.norm(dim=0) / (low.norm(dim=0) + EPS)).unsqueeze(0)  # r×n → one per column


def limit_growth_(update: Tensor, state: dict[str, Any], gamma: float) -> Tensor:
    """Fira's norm-growth limiter, in place: ‖update‖ may grow by at most a factor γ per step."""
    norm = float(torch.linalg.vector_norm(update))
    prev = state.get("limiter_norm")
    if prev is None:
        state["limiter_norm"] = norm
        return update
    limiter = max(norm / (prev + EPS), gamma) / gamma
    if limiter != 1.0:
        update.div_(limiter)
    state["limiter_norm"] = norm / limiter
    return update


class Fira(LowRankAdam):
    """Fira with Adam (module docstring). Extra option: ``limiter`` γ (default 1.01)."""

    default_scale = 0.25
    default_projector = "svd"
    extra_options = ("limiter",)

    def __init__(self, params, lr: float = 1e-3, *args, limiter: float = 1.01, **kwargs):
        super().__init__(params, lr, *args, limiter=limiter, **kwargs)

    def _check_extra(self, g: dict[str, Any], bad) -> None:
        if g.get("limiter", 1.01) < 1.0:
            raise bad("limiter", g["limiter"], "the growth limit γ must be ≥ 1 (Fira uses 1.01)")

    def _apply_update(self, p: Tensor, grad: Tensor, low: Tensor, direction: Tensor, basis: Tensor, side: str,
                      size: float, state: dict[str, Any], group: dict[str, Any]) -> None:
        residual = project_back_add_(grad.clone(), low, basis, side, alpha=-group["scale"])  # G − α·P·R
        residual.mul_(channel_ratio(direction, low, side))
        limit_growth_(residual, state, group["limiter"])
        p.add_(residual, alpha=-size)
        project_back_add_(p, direction, basis, side, alpha=-size * group["scale"])
