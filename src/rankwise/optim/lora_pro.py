"""LoRA-Pro: replace the factor gradients by the pair whose low-rank step best matches the full gradient.

"LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", Wang, Liang et al., arXiv 2407.18242
(reference code: mrflogs/LoRA-Pro).

With ΔW = s·B·A, a step (δA, δB) moves W by s·(B·δA + δB·A) to first order. Given the full
gradient G = ∂L/∂W — known to the factors only through gA = s·BᵀG (r, n) and gB = s·G·Aᵀ (m, r) —
LoRA-Pro picks (gA′, gB′) minimising ‖s·(B·gA′ + gB′·A) − G‖_F, closest to (gA, gB) among the
minimisers (Theorems 2.1–2.3):

    gA′ = (1/s²)·(BᵀB)⁻¹·gA + X·A
    gB′ = (1/s²)·[I − B(BᵀB)⁻¹Bᵀ]·gB·(AAᵀ)⁻¹ − B·X
    X:  (BᵀB)·X + X·(AAᵀ) = −(1/s²)·(BᵀB)⁻¹·gA·Aᵀ           (an r × r Sylvester equation)

Everything is r × r or r × (m + n): the m × n gradient is never formed. Both Gram matrices get a
ridge ε·I (ε = 1e-8 by default, option ``lorapro_ridge``) so B = 0 at init is handled; the
Sylvester equation is solved by diagonalising the two symmetric Grams (X̃_ij = C̃_ij/(λ_i + μ_j)).

This is the SGD form of the rule: the adjusted gradients go to whichever optimizer runs next. The
paper's AdamW variant keeps m × n moments of the equivalent full gradient, which contradicts
rankwise's no-m×n rule and is not implemented.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from ..core.registry import RULE_OPTIONS
from ..schedule import TrainingSchedule
from .factored import factor_pairs, ridge_eye

RULE_OPTIONS["lora-pro"] = {"lorapro_ridge": 1e-8}


def solve_sylvester_sym(p: torch.Tensor, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """X with P·X + X·Q = C for symmetric positive (semi)definite P (r, r), Q (k, k), P + Q's spectra > 0."""
    lp, up = torch.linalg.eigh(p)
    lq, uq = torch.linalg.eigh(q)
    ct = up.t() @ c @ uq
    return up @ (ct / (lp[:, None] + lq[None, :])) @ uq.t()


def lora_pro_grads(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, scale: float,
                   ridge: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """The LoRA-Pro gradients (gA′ (r, n), gB′ (m, r)) from A (r, n), B (m, r), gA, gB and s; fp32 or fp64."""
    dt = acc_dtype(a.dtype)
    a, b, ga, gb = a.to(dt), b.to(dt), ga.to(dt), gb.to(dt)
    r = a.shape[0]
    s2 = scale * scale
    btb = b.t() @ b + ridge_eye(r, ridge, a)               # (r, r)
    aat = a @ a.t() + ridge_eye(r, ridge, a)               # (r, r)
    btb_inv = torch.linalg.inv(btb)
    aat_inv = torch.linalg.inv(aat)
    c1 = btb_inv @ ga / s2                                 # (r, n)
    proj_gb = gb - b @ (btb_inv @ (b.t() @ gb))            # [I − B(BᵀB)⁻¹Bᵀ]·gB, (m, r)
    c2 = proj_gb @ aat_inv / s2                            # (m, r)
    x = solve_sylvester_sym(btb, aat, -(c1 @ a.t()))       # (r, r)
    return c1 + x @ a, c2 - b @ x


class LoRAProRule(TrainingSchedule):
    """LoRA-Pro as a training schedule: rewrites every LoRA factor gradient in ``before_step``."""

    def __init__(self, model: nn.Module, config: Any = None, total_steps: int = 0):
        self.pairs = factor_pairs(model, "LoRA-Pro")
        self.ridge = float(config.option("lorapro_ridge")) if config is not None else 1e-8

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        for f in self.pairs:
            if f.a.grad is None or f.b.grad is None:
                continue
            ga, gb = lora_pro_grads(f.a, f.b, f.a.grad, f.b.grad, f.scale, self.ridge)
            f.a.grad.copy_(ga)
            f.b.grad.copy_(gb)
