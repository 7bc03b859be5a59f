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

Two forms, chosen by option ``lorapro_optimizer`` of the ``lora-pro`` method:

* ``"adamw"`` (default, the paper's Algorithm "LoRA-Pro with AdamW", used for all its main results):
  :class:`rankwise.optim.LoRAProAdamW` keeps AdamW moments of the equivalent full gradient
  g̃ = s·(B·gA′ + gB′·A) — m × n per layer — and maps the Adam direction back to the factors with
  the same closed form. See ``rankwise.optim.lora_pro_adamw``.
* ``"rule"``: :class:`LoRAProRule` below, the paper's SGD form — the adjusted gradients go to
  whichever optimizer runs next (AdamW in rankwise's loop), so optimizer state stays factor-sized.
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

LORAPRO_OPTIMIZERS = ("adamw", "rule")
RULE_OPTIONS["lora-pro"] = {"lorapro_ridge": 1e-8, "lorapro_optimizer": "adamw"}


def lora_pro_optimizer(config: Any) -> str:
    """The ``lorapro_optimizer`` option of ``config`` ("adamw" or "rule"), checked."""
    mode = config.option("lorapro_optimizer") if config is not None else "adamw"
    if mode not in LORAPRO_OPTIMIZERS:
        raise ConfigError(f"options['lorapro_optimizer'] = {mode!r} is not one of {LORAPRO_OPTIMIZERS}: 'adamw' is "
                          "the paper's AdamW on the equivalent gradient, 'rule' adjusts gradients for any optimizer")
    return mode


def solve_sylvester_sym(p: torch.Tensor, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """X with P·X + X·Q = C for symmetric positive (semi)definite P (r, r), Q (k, k), P + Q's spectra > 0."""
    lp, up = torch.linalg.eigh(p)
    lq, uq = torch.linalg.eigh(q)
    ct = up.t() @ c @ uq
    return up @ (ct / (lp[:, None] + lq[None, :])) @ uq.t()


def grams(a: torch.Tensor, b: torch.Tensor, ridge: float) -> tuple[torch.Tensor, ...]:
    """(BᵀB + εI, AAᵀ + εI, their inverses), all r × r."""
    r = a.shape[0]
    btb = b.t() @ b + ridge_eye(r, ridge, a)
    aat = a @ a.t() + ridge_eye(r, ridge, a)
    return btb, aat, torch.linalg.inv(btb), torch.linalg.inv(aat)


def projected_grads(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, scale: float,
                    g: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA-Pro's gradients without the Sylvester term: ((BᵀB)⁻¹gA/s², [I − B(BᵀB)⁻¹Bᵀ]gB(AAᵀ)⁻¹/s²).

    ``g`` is :func:`grams`. X·A and −B·X cancel in s·(B·gA′ + gB′·A), so these two alone give the
    equivalent gradient.
    """
    _, _, btb_inv, aat_inv = g
    s2 = scale * scale
    c1 = btb_inv @ ga / s2                                 # (r, n)
    proj_gb = gb - b @ (btb_inv @ (b.t() @ gb))            # [I − B(BᵀB)⁻¹Bᵀ]·gB, (m, r)
    return c1, proj_gb @ aat_inv / s2                      # (r, n), (m, r)


def closed_form(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, scale: float,
                g: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(gA′, gB′) of the module docstring, with the Grams ``g`` (:func:`grams`) already computed."""
    btb, aat, _, _ = g
    c1, c2 = projected_grads(a, b, ga, gb, scale, g)
    x = solve_sylvester_sym(btb, aat, -(c1 @ a.t()))       # (r, r)
    return c1 + x @ a, c2 - b @ x


def lora_pro_grads(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, scale: float,
                   ridge: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """The LoRA-Pro gradients (gA′ (r, n), gB′ (m, r)) from A (r, n), B (m, r), gA, gB and s; fp32 or fp64."""
    dt = acc_dtype(a.dtype)
    a, b, ga, gb = a.to(dt), b.to(dt), ga.to(dt), gb.to(dt)
    return closed_form(a, b, ga, gb, scale, grams(a, b, ridge))


class LoRAProRule(TrainingSchedule):
    """LoRA-Pro's SGD form as a training schedule: rewrites every LoRA factor gradient in ``before_step``."""

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
