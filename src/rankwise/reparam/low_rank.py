"""Pure low-rank training: W = s·B·A from scratch.

The weak baseline of "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection"
(Zhao et al., arXiv 2403.03507, Table 2 "Low-Rank"); also the factored form that weight
refactorisation (refactor.py) and SLTrain / LOST build on.

Shapes: A (r, n), B (m, r). Forward y = s·B·(A·x) + b costs O(T·r·(m+n)) for T tokens; trainable
parameters r·(m+n) (+ m bias), Adam state 2·r·(m+n). Init: balanced truncated SVD of the layer's
dense init (B = U_r√Σ_r, A = √Σ_r V_rᵀ), so training starts from the best rank-r approximation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ReparamConfig
from .layers import FactoredLinear, balanced_factors, layer_rank, replace_linears


class LowRankLinear(FactoredLinear):
    """y = s·B·(A·x) + b with trainable ``A`` (r, n) and ``B`` (m, r)."""

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float = 1.0,
                 bias: torch.Tensor | None = None, dtype: torch.dtype | None = None, device=None):
        super().__init__(in_features, out_features, bias)
        self.rank, self.scale = rank, scale
        self.A = nn.Parameter(torch.zeros(rank, in_features, dtype=dtype, device=device))
        self.B = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int, scale: float = 1.0) -> LowRankLinear:
        """Factor ``layer`` by balanced truncated SVD."""
        w = layer.weight
        new = cls(layer.in_features, layer.out_features, rank, scale, layer.bias, w.dtype, w.device)
        b, a = balanced_factors(w, rank, scale)
        with torch.no_grad():
            new.A.copy_(a)
            new.B.copy_(b)
        return new

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """s·B·(A·x), (..., m)."""
        out = F.linear(F.linear(x, self.A), self.B)  # (..., r) -> (..., m)
        return out if self.scale == 1.0 else out * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.low_rank(x)
        return out if self.bias is None else out + self.bias

    def dense_weight(self) -> torch.Tensor:
        return self.scale * (self.B @ self.A)

    def factor_pairs(self):
        return [(self.B, self.A, self.scale)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scale={self.scale:g}"


def apply_low_rank(model: nn.Module, config: ReparamConfig) -> list[str]:
    """Replace the selected linears by :class:`LowRankLinear`."""
    def build(i, name, layer):
        r = layer_rank(config, layer)
        return LowRankLinear.from_linear(layer, r, config.scale(r))

    return replace_linears(model, config, build)
