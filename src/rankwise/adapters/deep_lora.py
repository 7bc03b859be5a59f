"""Deep LoRA: a three-factor (depth-3 linear network) update with small orthogonal init.

"Compressible Dynamics in Deep Overparameterized Low-Rank Learning & Adaptation", Yaras et al.,
arXiv 2406.04112 (the survey's §"Deep LoRA").

    ΔW = W₃·W₂·W₁,   W₃ (m, r), W₂ (r, r), W₁ (r, n)

r·(m + n) + r² trainable numbers; no α/r scale. Each factor starts as ε times a (semi-)orthogonal
matrix (ε = ``deep_lora_eps``, 1e-3), so ΔW₀ = ε³·(orthogonal product) is of order 1e-9: the
adapted model starts at the base model up to that. The paper's point is that the learning
dynamics of the deep factorisation stay in a small invariant subspace, so the factors can be
compressed after a few steps: :func:`compress` replaces each layer's (W₃, W₂, W₁) by rank-k
factors (U_k, diag(S_k), V_kᵀ) of the current product's SVD — exact up to the discarded singular
values — after which the optimizer must be re-created (the parameter shapes change).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from .factored import FactoredDelta

OPTIONS = {"deep_lora_eps": 1e-3}


class DeepLoRA(FactoredDelta):
    """ΔW = W₃·W₂·W₁; trainable ``deep_W1`` (r, n), ``deep_W2`` (r, r), ``deep_W3`` (m, r)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)
        self.eps = float(ctx.option("deep_lora_eps"))
        m, n = geometry.out_features, geometry.in_features
        self.deep_W1 = nn.Parameter(torch.empty(rank, n, dtype=dtype, device=device))
        self.deep_W2 = nn.Parameter(torch.empty(rank, rank, dtype=dtype, device=device))
        self.deep_W3 = nn.Parameter(torch.empty(m, rank, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            for p in (self.deep_W1, self.deep_W2, self.deep_W3):
                nn.init.orthogonal_(p)
                p.mul_(self.eps)
        return False

    def factors(self):
        return self.deep_W3 @ self.deep_W2, self.deep_W1  # (m, r), (r, n)

    @torch.no_grad()
    def compress_to(self, rank: int) -> None:
        """Replace the factors by the rank-``rank`` SVD of W₃W₂W₁: W₃ = U_k, W₂ = diag(S_k), W₁ = V_kᵀ."""
        if not 0 < rank <= self.rank:
            raise ConfigError(f"compress rank must be in [1, {self.rank}], got {rank}")
        u, s, vh = torch.linalg.svd((self.deep_W3 @ self.deep_W2 @ self.deep_W1).float(), full_matrices=False)
        dt = self.deep_W1.dtype
        self.deep_W3 = nn.Parameter(u[:, :rank].to(dt).contiguous())
        self.deep_W2 = nn.Parameter(torch.diag(s[:rank]).to(dt))
        self.deep_W1 = nn.Parameter(vh[:rank].to(dt).contiguous())
        self.rank = rank


def compress(model: nn.Module, rank: int, name: str = "default") -> int:
    """Compress every Deep LoRA layer of adapter ``name`` to rank ``rank``; returns how many layers changed.

    Re-create the optimizer afterwards. The saved adapter records the new rank per layer.
    """
    from ..core import api

    found = [h for _, _, h in api.hosts(model) if name in h and isinstance(h[name].delta, DeepLoRA)]
    if not found:
        raise ConfigError(f"adapter {name!r} has no Deep LoRA layers")
    if any(name in h.merged for h in found):
        raise ConfigError(f"adapter {name!r} is merged; unmerge it before compressing")
    for h in found:
        h[name].delta.compress_to(rank)
    return len(found)
