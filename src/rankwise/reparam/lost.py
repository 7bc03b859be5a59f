"""LOST: an SVD-initialised low-rank part plus a channel-wise sparse complement, mixed by γ.

"LOST: Low-rank and Sparse Pre-training for Large Language Models" (Li et al., arXiv 2508.02668).
At init, W0 = U Σ Vᵀ is split into its dominant rank-r part U_r Σ_r V_rᵀ and the residual
R = W0 − U_r Σ_r V_rᵀ (the remaining singular values). The k = ⌈f·n⌉ input channels (columns) with the
largest residual norms ‖R[:, j]‖ form the channel-sparse part S (m, k) on those columns. Then

    W = γ·s·B·A + (1 − γ)·S·P,       y = γ·s·B·(A·x) + (1 − γ)·S·x[idx] + b

(P scatters the k columns back to their channel indices ``idx``). B, A start as the balanced factors
of U_r Σ_r V_rᵀ / γ and S as R[:, idx] / (1 − γ), so W starts as the top-r part plus the chosen
residual channels. Trainable: r·(m+n) + m·k; Adam state twice that. Never forms W in training.
Note: the mixing form with γ follows the issue's description; the official code's details may differ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ReparamConfig
from .layers import balanced_factors, layer_rank, replace_linears
from .low_rank import LowRankLinear


class LostLinear(LowRankLinear):
    """y = γ·s·B·(A·x) + (1−γ)·S·x[channels] + b; ``S`` (m, k) trained, ``channels`` (k,) fixed."""

    def __init__(self, in_features: int, out_features: int, rank: int, channels: int, gamma: float,
                 scale: float = 1.0, bias: torch.Tensor | None = None, dtype=None, device=None):
        super().__init__(in_features, out_features, rank, scale, bias, dtype, device)
        self.gamma = gamma
        self.S = nn.Parameter(torch.zeros(out_features, channels, dtype=dtype, device=device))
        self.register_buffer("channels", torch.zeros(channels, dtype=torch.long, device=device))

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int, channel_fraction: float, gamma: float,
                    scale: float = 1.0) -> LostLinear:
        w = layer.weight
        m, n = layer.out_features, layer.in_features
        k = max(1, min(n, math.ceil(channel_fraction * n)))
        new = cls(n, m, rank, k, gamma, scale, layer.bias, w.dtype, w.device)
        b, a = balanced_factors(w, rank, scale * gamma)      # γ·s·B·A = top-r part
        with torch.no_grad():
            resid = w.detach().float() - (gamma * scale) * (b.float() @ a.float())  # (m, n), init only
            idx = torch.linalg.vector_norm(resid, dim=0).topk(k).indices.sort().values
            new.A.copy_(a)
            new.B.copy_(b)
            new.channels.copy_(idx)
            new.S.copy_(resid[:, idx] / (1 - gamma))
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gamma * self.low_rank(x) + (1 - self.gamma) * F.linear(x.index_select(-1, self.channels), self.S)
        return out if self.bias is None else out + self.bias

    def dense_weight(self) -> torch.Tensor:
        w = (self.gamma * self.scale) * (self.B @ self.A)
        return w.index_add(1, self.channels, (1 - self.gamma) * self.S)

    def factor_pairs(self):
        return [(self.B, self.A, self.gamma * self.scale)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channels={self.S.shape[1]}, gamma={self.gamma:g}"


def apply_lost(model: nn.Module, config: ReparamConfig) -> list[str]:
    """Replace the selected linears by :class:`LostLinear`."""
    def build(i, name, layer):
        r = layer_rank(config, layer)
        return LostLinear.from_linear(layer, r, config.channel_fraction, config.gamma, config.scale(r))

    return replace_linears(model, config, build)
