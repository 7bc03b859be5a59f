"""ALLoRA: LoRA without dropout and scale, with gradients scaled inversely to the parameters' norm.

"ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws", Huang & Balestriero, arXiv 2410.09692.

For every row θ_i of A (r, n) and of B (m, r):

    ∇θ_i ← ∇θ_i / √(‖θ_i‖² + 1/η²)

so rows near zero (B at init) move with an effective learning rate up to η times larger, and
large rows slow down — replacing the α/r scale and dropout, which the preset ``allora`` removes
(dropout 0, α = r so s = 1). η is option ``allora_eta`` (default 1). Where the paper leaves the
grouping open, rankwise uses the output-row norms of each factor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.registry import RULE_OPTIONS
from ..schedule import TrainingSchedule
from .factored import factor_pairs

RULE_OPTIONS["allora"] = {"allora_eta": 1.0}


def allora_scale(param: torch.Tensor, eta: float) -> torch.Tensor:
    """1/√(‖θ_i‖² + 1/η²) per row of ``param``, shaped (rows, 1)."""
    sq = param.detach().float().square().sum(1, keepdim=True)
    return (sq + 1.0 / eta ** 2).rsqrt().to(param.dtype)


class ALLoRARule(TrainingSchedule):
    """ALLoRA's gradient scaling, applied in ``before_step``."""

    def __init__(self, model: nn.Module, config: Any = None, total_steps: int = 0):
        self.pairs = factor_pairs(model, "ALLoRA")
        self.eta = float(config.option("allora_eta")) if config is not None else 1.0

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        for f in self.pairs:
            for p in (f.a, f.b):
                if p.grad is not None:
                    p.grad.mul_(allora_scale(p, self.eta))
