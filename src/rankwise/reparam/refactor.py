"""Weight refactorisation + momentum reset, a schedule for any linear factored method.

From the benchmark study "Low-rank training methods for LLM pretraining: a benchmark" (arXiv 2505.22922):
every ``refactor_every`` steps each factor pair is re-balanced by SVD without changing s·B·A,

    B = Q_B R_B,  Aᵀ = Q_A R_A  (thin QR),   R_B R_Aᵀ = u Σ vᵀ  (r × r SVD),
    B ← Q_B u √Σ,   A ← √Σ vᵀ Q_Aᵀ           (so B·A is unchanged and BᵀB = AAᵀ = Σ)

which costs O((m+n)·r²) and never forms the m×n product; then the factors' optimizer moments are reset
and the learning rate ramps linearly over ``refactor_warmup`` steps (``lr_factor``).
Applies to low-rank, SLTrain and LOST layers (their B·A part) and to LoRA adapters (ReLoRA, SwitchLoRA).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.api import hosts
from ..schedule import TrainingSchedule
from .layers import factored_layers
from .optim_state import reset_state


def factor_pairs(model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """Every (B, A) pair of ``model``: factored layers' low-rank parts and LoRA adapters."""
    pairs = [(b, a) for _, layer in factored_layers(model) for b, a, _ in layer.factor_pairs()]
    for _, _, host in hosts(model):
        for adapter in host.values():
            delta = adapter.delta
            if hasattr(delta, "lora_A") and delta.geometry.kind == "linear":
                pairs.append((delta.lora_B, delta.lora_A))
    return pairs


@torch.no_grad()
def rebalance(b: torch.Tensor, a: torch.Tensor) -> None:
    """Re-balance B (m, r), A (r, n) in place: same B·A, B = U√Σ, A = √ΣVᵀ, via QR + an r×r SVD."""
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    qb, rb = torch.linalg.qr(b.to(acc))                 # (m, r), (r, r)
    qa, ra = torch.linalg.qr(a.t().to(acc))             # (n, r), (r, r)
    u, s, vh = torch.linalg.svd(rb @ ra.t())            # r × r
    root = s.sqrt()
    b.copy_((qb @ (u * root)).to(b.dtype))
    a.copy_(((root[:, None] * vh) @ qa.t()).to(a.dtype))


class RefactorSchedule(TrainingSchedule):
    """Periodic SVD re-balancing of every factor pair, moment reset, and a short linear LR ramp."""

    def __init__(self, model: nn.Module, every: int, warmup: int = 0):
        self.pairs = factor_pairs(model)
        if not self.pairs:
            from ..errors import ConfigError

            raise ConfigError("refactorisation needs factored layers (low-rank, SLTrain, LOST or a LoRA adapter); "
                              "the model has none")
        self.every, self.warmup = every, warmup
        self.count = 0

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        if (step + 1) % self.every:
            return
        self.count += 1
        for b, a in self.pairs:
            rebalance(b, a)
            reset_state(optimizer, [b, a])

    def lr_factor(self, step: int) -> float:
        if step < self.every or self.warmup == 0:
            return 1.0
        return min(1.0, (step % self.every + 1) / self.warmup)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
