"""SVFit: fine-tune only the top-r singular values of W0.

"SVFit: Parameter-Efficient Fine-Tuning of Large Pre-Trained Models Using Singular Values",
Sun et al., arXiv 2409.05926.

    W0 = U_r·diag(σ₀)·V_rᵀ + W_res,   W = U_r·diag(σ)·V_rᵀ + W_res
    ⇒ ΔW = U_r·diag(σ − σ₀)·V_rᵀ

with the top-r singular triplets of W0 (U_r (m, r), V_rᵀ (r, n), σ₀ frozen) and only σ trained:
r numbers per layer, initialised to σ₀, so ΔW starts at 0. The paper freezes the residual W_res
and trains σ; writing the update relative to σ₀ leaves W0 untouched (nothing to restore on
unload) with the same forward and gradients. U_r and V_r are persistent buffers (they depend on
W0's exact values, so they are saved rather than recomputed). No α/r scale.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from ..init.registry import fp32_svd
from .factored import FactoredDelta


class SVFit(FactoredDelta):
    """ΔW = U_r·diag(σ − σ₀)·V_rᵀ; trainable ``svfit_sigma`` (r,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None):
        super().__init__(geometry, rank, 1.0)
        m, n = geometry.out_features, geometry.in_features
        self.register_buffer("svfit_U", torch.zeros(m, rank, dtype=dtype, device=device))
        self.register_buffer("svfit_Vh", torch.zeros(rank, n, dtype=dtype, device=device))
        self.register_buffer("svfit_sigma0", torch.zeros(rank, dtype=dtype, device=device))
        self.svfit_sigma = nn.Parameter(torch.zeros(rank, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        u, s, vh = fp32_svd(w0, self.rank, None)
        with torch.no_grad():
            for t, v in ((self.svfit_U, u), (self.svfit_Vh, vh), (self.svfit_sigma0, s), (self.svfit_sigma, s)):
                t.copy_(v.to(t.dtype))
        return False

    def factors(self):
        return self.svfit_U, (self.svfit_sigma - self.svfit_sigma0)[:, None] * self.svfit_Vh
