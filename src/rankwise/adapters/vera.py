"""VeRA: vector-based random matrix adaptation.

"VeRA: Vector-based Random Matrix Adaptation", Kopiczko, Blankevoort & Asano, arXiv 2310.11454.

    ΔW = diag(b)·B·diag(d)·A

with A (r, n) and B (m, r) frozen random matrices **shared by every adapted layer** (one pair per
adapter, sized by the largest layer; each layer uses the top-left slice A[:, :n], B[:m, :]) and
trainable vectors d (r) and b (m): r + m trainable numbers per layer. Init d = ``vera_d_initial``
(0.1), b = 0, so ΔW starts at 0. There is no α/r scale (α is ignored), as in the paper and PEFT.

The bases are Kaiming-uniform draws from a CPU generator seeded with ``vera_seed`` (A first, then
B), exactly as Hugging Face PEFT's ``projection_prng_key`` does, so a rankwise VeRA and a PEFT VeRA
with the same seed share their bases. They are non-persistent buffers: the rankwise format stores
the seed and their shapes, not the tensors, and regenerates them on load.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from .factored import FactoredDelta

OPTIONS = {"vera_seed": 0, "vera_d_initial": 0.1}


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(−b, b), b = √(6 / fan_in), fan_in = shape[1]: PEFT's ``_kaiming_init`` (gain √2)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def vera_bases(ctx: BuildContext, rank: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter's shared (A (r, n_max), B (m_max, r)), drawn once from ``vera_seed``."""
    def make():
        g = ctx.generator(ctx.option("vera_seed"))
        a = kaiming_uniform((rank, ctx.max_in), g)
        b = kaiming_uniform((ctx.max_out, rank), g)
        return a, b

    a, b = ctx.shared("vera", make)
    return ctx.shared(f"vera/{dtype}/{device}", lambda: (a.to(device, dtype), b.to(device, dtype)))


class VeRA(FactoredDelta):
    """ΔW = diag(b)·B·diag(d)·A; trainable ``vera_lambda_d`` (r,), ``vera_lambda_b`` (m,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)  # no α/r in VeRA
        if rank != ctx.config.rank:
            raise ConfigError(f"VeRA shares one pair of bases across layers, so every layer needs the same rank; "
                              f"layer {ctx.layer!r} got rank {rank}, the config's rank is {ctx.config.rank} "
                              "(remove rank_pattern)")
        a, b = vera_bases(ctx, rank, dtype, device)
        self.register_buffer("vera_A", a[:, : geometry.in_features], persistent=False)   # (r, n) view
        self.register_buffer("vera_B", b[: geometry.out_features, :], persistent=False)  # (m, r) view
        self.vera_lambda_d = nn.Parameter(torch.empty(rank, dtype=dtype, device=device))
        self.vera_lambda_b = nn.Parameter(torch.empty(geometry.out_features, dtype=dtype, device=device))
        self.d_initial = float(ctx.option("vera_d_initial"))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            self.vera_lambda_d.fill_(self.d_initial)
            self.vera_lambda_b.zero_()
        return False

    def factors(self):
        return self.vera_lambda_b[:, None] * self.vera_B, self.vera_lambda_d[:, None] * self.vera_A
