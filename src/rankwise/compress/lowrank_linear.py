"""LowRankLinear: a Linear stored as two factors, y = up(down(x)) = B·(A·x) + b."""

from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """A rank-k replacement for an (m × n) Linear: ``down`` = A (k × n), ``up`` = B (m × k) with the bias.

    Stores k·(m + n) weights instead of m·n and costs k·(m + n) multiply-adds per token; the m × n product
    is never formed in the forward pass. Both factors are plain ``nn.Linear`` modules, so adapters
    (``rankwise.adapt``), optimizers and PEFT see ordinary layers.

    Args:
        in_features: n.
        out_features: m.
        rank: k.
        bias: whether ``up`` has a bias.
        kind: the layer this replaced: ``"linear"`` or ``"conv1d"`` (HF GPT-2 style), used by densify.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, kind: str = "linear",
                 device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank, self.kind = in_features, out_features, rank, kind
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)  # A: (k, n)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)  # B: (m, k)

    @classmethod
    def from_factors(cls, b: torch.Tensor, a: torch.Tensor, bias: torch.Tensor | None = None, kind: str = "linear",
                     dtype: torch.dtype | None = None) -> LowRankLinear:
        """Build from B (m, k), A (k, n) and an optional bias (m,), cast to ``dtype`` (default B's)."""
        dtype = dtype or b.dtype
        m, k = b.shape
        layer = cls(a.shape[1], m, k, bias=bias is not None, kind=kind, device=b.device, dtype=dtype)
        with torch.no_grad():
            layer.up.weight.copy_(b)
            layer.down.weight.copy_(a)
            if bias is not None:
                layer.up.bias.copy_(bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def dense_weight(self) -> torch.Tensor:
        """B @ A, (m, n) — for merging back and analysis, not for the forward pass."""
        return self.up.weight @ self.down.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, kind={self.kind}"
