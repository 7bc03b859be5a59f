"""MoRA: a square trainable matrix between non-parametric compress and decompress operators.

"MoRA: High-Rank Updating for Parameter-Efficient Fine-Tuning", Jiang et al.,
arXiv 2405.12130.

    ΔW·x = D·(M·(C·x)),   M (r̂, r̂) trainable,   r̂ = round(√((m + n)·r))

so that r̂² ≈ r·(m + n), LoRA's parameter count at rank r, but ΔW can reach rank r̂. C and D are
the reference code's "sharing" operators (``mora_type=1``): C sums the input in groups of r̂
consecutive features (the input is padded to a multiple of r̂ by repeating its first features,
as the reference does), D repeats the r̂ outputs ⌈m/r̂⌉ times and truncates to m. Both are
linear, so ΔW = D·M·C (m, n) exists for merging; the forward uses reshape/sum/repeat, never a
matrix. M starts at 0. No α/r scale. (The reference's RoPE-rotation operator, type 6, is not
implemented.) r̂ is capped at min(m, n).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..errors import ConfigError


def mora_rank(m: int, n: int, r: int) -> int:
    """r̂ = round(√((m+n)·r)), at most min(m, n)."""
    return min(int(math.sqrt((m + n) * r) + 0.5), m, n)


def compress(x: torch.Tensor, rh: int) -> torch.Tensor:
    """(..., n) -> (..., r̂): sum of consecutive groups of r̂ features, wrap-around padded."""
    n = x.shape[-1]
    if n % rh:
        x = torch.cat([x, x[..., : rh - n % rh]], dim=-1)
    return x.view(*x.shape[:-1], -1, rh).sum(-2)


def decompress(h: torch.Tensor, m: int) -> torch.Tensor:
    """(..., r̂) -> (..., m): h repeated ⌈m/r̂⌉ times, truncated."""
    reps = -(-m // h.shape[-1])
    return h.repeat(*([1] * (h.dim() - 1)), reps)[..., :m]


class MoRA(Parameterisation):
    """ΔW = D·M·C; trainable ``mora_M`` (r̂, r̂)."""

    supported_inits = ("default",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"MoRA adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer")
        self.rhat = mora_rank(geometry.out_features, geometry.in_features, rank)
        self.mora_M = nn.Parameter(torch.zeros(self.rhat, self.rhat, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            self.mora_M.zero_()
        return False

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.mora_M.dtype:
            x = x.to(self.mora_M.dtype)
        h = compress(x, self.rhat) @ self.mora_M.t()                   # (..., r̂)
        return out + decompress(h, self.geometry.out_features).to(out.dtype)

    def operators(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(D (m, r̂), C (r̂, n)) as matrices: the plain reference of :func:`compress`/:func:`decompress`."""
        eye = torch.eye(self.geometry.in_features, dtype=self.mora_M.dtype, device=self.mora_M.device)
        c = compress(eye, self.rhat).t()                               # column j = C·e_j
        d = decompress(torch.eye(self.rhat, dtype=eye.dtype, device=eye.device), self.geometry.out_features).t()
        return d, c

    def delta_matrix(self) -> torch.Tensor:
        d, c = self.operators()
        return d @ self.mora_M @ c

    def extra_repr(self) -> str:
        return f"in={self.geometry.in_features}, out={self.geometry.out_features}, rhat={self.rhat}"
