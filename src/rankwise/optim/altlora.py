"""AltLoRA: alternate least-squares-projected updates of B and A.

"AltLoRA: Towards Better Gradient Approximation in Low-Rank Adaptation with Alternating
Projections", Yu, Wang, Chen & Xue, arXiv 2505.12455 (reference code: LucasXinYu/AltLoRA).

Each factor moves by the gradient that best matches the full gradient G in the least-squares sense
given the other (fixed) factor:

    B-step:  gB′ = argmin ‖s·gB′·A − G‖_F = (1/s²)·gB·(AAᵀ)⁻¹      (A fixed)
    A-step:  gA′ = argmin ‖s·B·gA′ − G‖_F = (1/s²)·(BᵀB)⁻¹·gA      (B fixed)

Two forms, chosen by option ``altlora_optimizer`` of the ``altlora`` method:

* ``"momentum"`` (default, the paper's Algorithm 1, AltLoRA) and ``"adam"`` (Algorithm 2, AltLoRA+):
  :class:`rankwise.optim.AltLoRAOptimizer` moves A then B every step and carries each factor's
  low-rank momentum across the changing bases (M_A ← β1·(BᵀB)⁻¹Bᵀ·B′·M_A + (1−β1)·gA′, …). See
  ``rankwise.optim.altlora_optimizer``.
* ``"rule"``: :class:`AltLoRARule` below, a gradient rule for any optimizer: one factor per step,
  starting with B (B = 0 at init gives A no signal); the frozen factor's gradient is set to None so
  the wrapped optimizer leaves it and its state untouched that step, and each factor's optimizer state
  stays in its own basis (no transport).

Ridge ρ·I on the Grams: option ``altlora_ridge`` (default 1e-5, the reference trainer's value).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from ..core.registry import RULE_OPTIONS
from ..errors import ConfigError
from ..schedule import TrainingSchedule
from .factored import factor_pairs, ridge_eye

ALTLORA_OPTIMIZERS = ("momentum", "adam", "rule")
RULE_OPTIONS["altlora"] = {"altlora_ridge": 1e-5, "altlora_optimizer": "momentum"}


def altlora_optimizer(config: Any) -> str:
    """The ``altlora_optimizer`` option of ``config`` ("momentum", "adam" or "rule"), checked."""
    mode = config.option("altlora_optimizer") if config is not None else "momentum"
    if mode not in ALTLORA_OPTIMIZERS:
        raise ConfigError(f"options['altlora_optimizer'] = {mode!r} is not one of {ALTLORA_OPTIMIZERS}: 'momentum' "
                          "is the paper's AltLoRA, 'adam' its AltLoRA+, 'rule' the projected gradients for any "
                          "optimizer")
    return mode


def altlora_grad(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor, scale: float, which: str,
                 ridge: float = 1e-5) -> torch.Tensor:
    """The projected gradient of factor ``which`` ("A" or "B") given its raw gradient ``g``."""
    dt = acc_dtype(a.dtype)
    a, b, g = a.to(dt), b.to(dt), g.to(dt)
    r = a.shape[0]
    if which == "B":
        return torch.linalg.solve(a @ a.t() + ridge_eye(r, ridge, a), g.t()).t() / scale ** 2  # gB(AAᵀ)⁻¹ (sym)
    return torch.linalg.solve(b.t() @ b + ridge_eye(r, ridge, a), g) / scale ** 2              # (BᵀB)⁻¹gA


class AltLoRARule(TrainingSchedule):
    """AltLoRA's projected gradients as a training schedule: even steps move B, odd steps move A."""

    def __init__(self, model: nn.Module, config: Any = None, total_steps: int = 0):
        self.pairs = factor_pairs(model, "AltLoRA")
        self.ridge = float(config.option("altlora_ridge")) if config is not None else 1e-5

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
