"""RandLoRA: full-rank updates from sums of scaled random low-rank bases.

"RandLoRA: Full-rank parameter-efficient fine-tuning of large models", Albert et al.,
arXiv 2502.00987.

    ΔW = s · Σₖ₌₁ᴺ Bₖ·diag(λₖ)·A·diag(γₖ),   N = ⌈min(m, n)/r⌉,  s = α/r

in the orientation where A acts on the smaller side: A (r, min(m, n)) is one frozen random matrix
shared by all N bases, Bₖ (max(m, n), r) are N frozen random matrices; trainable are λ (r, N)
and γ (N, min(m, n)): r·N + N·min(m, n) numbers per layer. With N·r ≥ min(m, n) the sum can reach
full rank. Init λ = 0 (ΔW = 0), γ = 1/max(N, min(m, n)) (Hugging Face PEFT's reset; the paper
writes 1/max(m, n)).

The bases follow PEFT's ``RandLoraModel`` exactly (so files convert both ways): one pair for
the whole adapter, sized by the largest layer, Kaiming-uniform(a=√5) draws in bf16 from a CPU
generator seeded with ``randlora_seed`` (A, then the N slices of B), each divided by its std;
each layer slices A[:, :, :min(m, n)], B[:max(m, n), :N, :]. The pairing of basis columns with
λ-scaled rows follows PEFT's flattening. They are non-persistent buffers, regenerated on load.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from .factored import FactoredDelta

OPTIONS = {"randlora_seed": 0}


def num_bases(min_dim: int, rank: int) -> int:
    """N = ⌈min(m, n)/r⌉: enough rank-r bases for full rank."""
    return math.ceil(min_dim / rank)


def randlora_bases(ctx: BuildContext, rank: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter's shared A (r, 1, min_max) and B (max_max, N_max, r), as PEFT draws them."""
    def make():
        big, small = max(ctx.max_out, ctx.max_in), min(ctx.max_out, ctx.max_in)
        g = ctx.generator(ctx.option("randlora_seed"))
        half = torch.bfloat16  # PEFT draws in bf16 (when available, as on every recent CPU build)
        a = nn.init.kaiming_uniform_(torch.empty(rank, 1, small, dtype=half), a=math.sqrt(5), generator=g)
        b = torch.cat([nn.init.kaiming_uniform_(torch.empty(big, 1, rank, dtype=half), a=math.sqrt(5), generator=g)
                       for _ in range(num_bases(small, rank))], dim=1)
        return (a / a.std()).float(), (b / b.std()).float()

    a, b = ctx.shared("randlora", make)
    return ctx.shared(f"randlora/{dtype}/{device}", lambda: (a.to(device, dtype), b.to(device, dtype)))


class RandLoRA(FactoredDelta):
    """ΔW = s·Σₖ Bₖ·diag(λₖ)·A·diag(γₖ); trainable ``randlora_lambda`` (r, N), ``randlora_gamma`` (N, min(m, n))."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, scale)
        if rank != ctx.config.rank:
            raise ConfigError(f"RandLoRA shares one set of bases across layers, so every layer needs the same rank; "
                              f"layer {ctx.layer!r} got {rank}, the config's rank is {ctx.config.rank}")
        m, n = geometry.out_features, geometry.in_features
        small, big = min(m, n), max(m, n)
        nb = num_bases(small, rank)
        a, b = randlora_bases(ctx, rank, dtype, device)
        self.register_buffer("randlora_A", a[:, :, :small], persistent=False)     # (r, 1, min)
        self.register_buffer("randlora_B", b[:big, :nb, :], persistent=False)     # (max, N, r)
        self.randlora_lambda = nn.Parameter(torch.empty(rank, nb, dtype=dtype, device=device))
        self.randlora_gamma = nn.Parameter(torch.empty(nb, small, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            self.randlora_lambda.zero_()
            self.randlora_gamma.fill_(1.0 / max(self.randlora_gamma.shape))
        return False

    def factors(self):
        # small side: rows (k, b) -> λ[k, b]·A[k, :]·γ[b, :]  (r·N, min); big side: columns (b, k) of B (max, N·r)
        small = (self.randlora_lambda[:, :, None] * self.randlora_A * self.randlora_gamma[None]).flatten(0, 1)
        big = self.randlora_B.flatten(1)
        if self.geometry.in_features <= self.geometry.out_features:
            return big, small                  # (m, N·r), (r·N, n)
        return small.t(), big.t()              # (m, r·N), (N·r, n)
