"""NOLA: LoRA factors as linear combinations of frozen random bases.

"NOLA: Compressing LoRA using Linear Combination of Random Basis", Koohpayegani et al.,
arXiv 2310.02556.

    A = Σᵢ₌₁ᵏ αᵢ·Aᵢ  (r, n),   B = Σⱼ₌₁ˡ βⱼ·Bⱼ  (m, r),   ΔW = s·B·A,  s = α/r

with Aᵢ, Bⱼ frozen random matrices drawn from a seeded generator and only the k + l coefficients
trained per layer (``nola_k``, ``nola_l``). Init: α ~ U(−1/√k, 1/√k), β = 0, so ΔW starts at 0.

The bases are a pure function of (``nola_seed``, layer shape, rank, k, l): layers of the same
shape share them (the reference code regenerates them per layer from a seed; sharing by shape
gives the same distribution with less memory). They are non-persistent buffers, so a saved NOLA
adapter is the seed plus the coefficients, as in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.geometry import LayerGeometry
from .factored import FactoredDelta

OPTIONS = {"nola_k": 64, "nola_l": 64, "nola_seed": 0}


def nola_bases(ctx: BuildContext, m: int, n: int, r: int, k: int, l_: int, dtype, device):
    """(A bases (k, r, n), B bases (l, m, r)), Kaiming-uniform, shared by layers of one shape."""
    def make():
        # one seed per shape, mixed in so that different shapes get different draws
        g = ctx.generator(int(ctx.option("nola_seed")) * 1_000_003 + m * 7919 + n * 104_729 + r)
        a = torch.empty(k, r, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n), generator=g)
        b = torch.empty(l_, m, r).uniform_(-1 / math.sqrt(r), 1 / math.sqrt(r), generator=g)
        return a.to(device, dtype), b.to(device, dtype)

    return ctx.shared(f"nola/{m}x{n}/r{r}/{k},{l_}/{dtype}/{device}", make)


class NOLA(FactoredDelta):
    """ΔW = s·(Σ βⱼBⱼ)(Σ αᵢAᵢ); trainable ``nola_alpha`` (k,), ``nola_beta`` (l,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, scale)
        k, l_ = int(ctx.option("nola_k")), int(ctx.option("nola_l"))
        a, b = nola_bases(ctx, geometry.out_features, geometry.in_features, rank, k, l_, dtype, device)
        self.register_buffer("nola_A", a, persistent=False)  # (k, r, n)
        self.register_buffer("nola_B", b, persistent=False)  # (l, m, r)
        self.nola_alpha = nn.Parameter(torch.empty(k, dtype=dtype, device=device))
        self.nola_beta = nn.Parameter(torch.empty(l_, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            k = self.nola_alpha.numel()
            self.nola_alpha.uniform_(-1 / math.sqrt(k), 1 / math.sqrt(k))
            self.nola_beta.zero_()
        return False

    def factors(self):
        b = torch.einsum("l,lmr->mr", self.nola_beta, self.nola_B)   # (m, r)
        a = torch.einsum("k,krn->rn", self.nola_alpha, self.nola_A)  # (r, n)
        return b, a
