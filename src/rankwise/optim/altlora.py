"""AltLoRA: alternate least-squares-projected updates of B and A.

"AltLoRA: Towards Better Gradient Approximation in Low-Rank Adaptation with Alternating
Projections", Yu, Wang, Chen & Xue, arXiv 2505.12455.

Each step moves one factor only, by the gradient that best matches the full gradient G in the
least-squares sense given the other (fixed) factor:

    B-step:  gB′ = argmin ‖s·gB′·A − G‖_F = (1/s²)·gB·(AAᵀ)⁻¹      (A frozen this step)
    A-step:  gA′ = argmin ‖s·B·gA′ − G‖_F = (1/s²)·(BᵀB)⁻¹·gA      (B frozen this step)

starting with B (B = 0 at init gives A no signal). The frozen factor's gradient is set to None, so
the wrapped optimizer leaves it and its state untouched that step; each factor's momentum stays
in its own r-dimensional space (the paper's low-rank momentum; its momentum transport between
the alternating bases is not implemented). Ridge ε·I on the Grams (option ``altlora_ridge``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from ..core.registry import RULE_OPTIONS
from ..schedule import TrainingSchedule
from .factored import factor_pairs, ridge_eye

RULE_OPTIONS["altlora"] = {"altlora_ridge": 1e-6}


def altlora_grad(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor, scale: float, which: str,
                 ridge: float = 1e-6) -> torch.Tensor:
    """The projected gradient of factor ``which`` ("A" or "B") given its raw gradient ``g``."""
    dt = acc_dtype(a.dtype)
    a, b, g = a.to(dt), b.to(dt), g.to(dt)
    r = a.shape[0]
    if which == "B":
        return torch.linalg.solve(a @ a.t() + ridge_eye(r, ridge, a), g.t()).t() / scale ** 2  # gB(AAᵀ)⁻¹ (sym)
    return torch.linalg.solve(b.t() @ b + ridge_eye(r, ridge, a), g) / scale ** 2              # (BᵀB)⁻¹gA


class AltLoRARule(TrainingSchedule):
    """AltLoRA as a training schedule: even steps move B, odd steps move A."""

    def __init__(self, model: nn.Module, config: Any = None, total_steps: int = 0):
        self.pairs = factor_pairs(model, "AltLoRA")
        self.ridge = float(config.option("altlora_ridge")) if config is not None else 1e-6

    @staticmethod
    def factor_at(step: int) -> str:
        return "B" if step % 2 == 0 else "A"

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        which = self.factor_at(step)
        for f in self.pairs:
            moving, frozen = (f.b, f.a) if which == "B" else (f.a, f.b)
            frozen.grad = None
            if moving.grad is not None:
                moving.grad.copy_(altlora_grad(f.a, f.b, moving.grad, f.scale, which, self.ridge))
