"""APOLLO and APOLLO-Mini: SGD-like memory, AdamW-like updates, from scaled raw gradients.

"APOLLO: SGD-like Memory, AdamW-level Performance" (Zhu et al., arXiv 2412.05270). Adam runs on a cheap
random projection R only to *estimate* how Adam would rescale the gradient; the update is the raw
gradient with that scaling:

    R = project(G) (seeded random projection, resampled every ``update_gap``),  N = Adam(R)
    channel-wise (APOLLO):  φ_i = ‖N_i‖/(‖R_i‖+1e-8) per channel of the full dimension
    tensor-wise (APOLLO-Mini, rank 1):  φ = ‖N‖/(‖R‖+1e-8)
    U = φ ⊙ G, then Fira's norm-growth limiter (γ = 1.01);   W ← W − step_size·√α·U

α = ``scale`` (APOLLO: 1; APOLLO-Mini: 128, whose √ compensates the rank-1 estimate's small norm ratio).
As in the official code (zhuhanqing/APOLLO, default ``scale_front=False``) √α is applied after the limiter.
No back-projection is needed, so the projector's basis is used only to project.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from .fira import EPS, channel_ratio, limit_growth_
from .lowrank import LowRankAdam

SCALE_TYPES = ("channel", "tensor")


class APOLLO(LowRankAdam):
    """APOLLO (module docstring). Extra options: ``scale_type`` ("channel" | "tensor"), ``limiter`` γ (1.01)."""

    default_scale = 1.0
    default_projector = "random"
    extra_options = ("scale_type", "limiter")

    def __init__(self, params, lr: float = 1e-3, *args, scale_type: str = "channel", limiter: float = 1.01,
                 **kwargs):
        super().__init__(params, lr, *args, scale_type=scale_type, limiter=limiter, **kwargs)

    def _check_extra(self, g: dict[str, Any], bad) -> None:
        if g.get("scale_type", "channel") not in SCALE_TYPES:
            raise bad("scale_type", g["scale_type"], f"choose one of {SCALE_TYPES}")
        if g.get("limiter", 1.01) < 1.0:
            raise bad("limiter", g["limiter"], "the growth limit γ must be ≥ 1 (APOLLO uses Fira's 1.01)")

    def _apply_update(self, p: Tensor, grad: Tensor, low: Tensor, direction: Tensor, basis: Tensor, side: str,
                      size: float, state: dict[str, Any], group: dict[str, Any]) -> None:
        if group["scale_type"] == "tensor":
            phi = direction.norm() / (low.norm() + EPS)
        else:
            phi = channel_ratio(direction, low, side)
        update = limit_growth_(grad * phi, state, group["limiter"])
        p.add_(update, alpha=-size * math.sqrt(group["scale"]))


class APOLLOMini(APOLLO):
    """APOLLO-Mini: tensor-wise scaling and scale 128 by default; give its low-rank groups ``rank=1`` (the paper's).

    Like every rankwise low-rank optimizer, only groups that set ``rank`` are projected
    (``low_rank_groups(model, rank=1)``; ``build_optimizer`` with ``method_config("apollo-mini")`` does it).
    """

    default_scale = 128.0

    def __init__(self, params, lr: float = 1e-3, *args, scale_type: str = "tensor", **kwargs):
        super().__init__(params, lr, *args, scale_type=scale_type, **kwargs)
