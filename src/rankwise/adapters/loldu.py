"""LoLDU: fine-tune the diagonal of an LDU decomposition of W0, plus one scale.

"LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition for Parameter-Efficient
Fine-Tuning", Shi et al., arXiv 2410.13618.

    W0 = P·L·D·U   (LU with partial pivoting; L unit lower, U unit upper, D = diag(U_lu))
    W  = W_res + σ·P·L_r·diag(z)·U_r,   W_res = W0 − P·L_r·diag(z₀)·U_r
    ⇒ ΔW = P·L_r·(σ·diag(z) − diag(z₀))·U_r

with the first r columns of P·L (m, r), the first r rows of U (r, n), z₀ = D[:r] frozen, and
trainable z (r, init z₀) and scalar σ (init 1): r + 1 numbers per layer, ΔW = 0 at start. As for
SVFit, writing the update relative to z₀ leaves W0 untouched. (Pivots with |D| < 1e-12 keep
U's row unnormalised and D = 1.) No α/r scale.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from .factored import FactoredDelta


def ldu(w0: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P·L[:, :r] (m, r), U_unit[:r] (r, n), D[:r] (r,)) from W0 = P·L·U in fp32."""
    p, lower, upper = torch.linalg.lu(w0.float())
    d = torch.diagonal(upper)[:rank].clone()
    d = torch.where(d.abs() < 1e-12, torch.ones_like(d), d)
    return p @ lower[:, :rank], upper[:rank] / d[:, None], d


class LoLDU(FactoredDelta):
    """ΔW = P·L_r·(σ·diag(z) − diag(z₀))·U_r; trainable ``loldu_z`` (r,) and ``loldu_sigma`` (1,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None):
        super().__init__(geometry, rank, 1.0)
        m, n = geometry.out_features, geometry.in_features
        self.register_buffer("loldu_L", torch.zeros(m, rank, dtype=dtype, device=device))
        self.register_buffer("loldu_U", torch.zeros(rank, n, dtype=dtype, device=device))
        self.register_buffer("loldu_z0", torch.zeros(rank, dtype=dtype, device=device))
        self.loldu_z = nn.Parameter(torch.zeros(rank, dtype=dtype, device=device))
        self.loldu_sigma = nn.Parameter(torch.ones(1, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        lower, upper, d = ldu(w0, self.rank)
        with torch.no_grad():
            for t, v in ((self.loldu_L, lower), (self.loldu_U, upper), (self.loldu_z0, d), (self.loldu_z, d)):
                t.copy_(v.to(t.dtype))
            self.loldu_sigma.fill_(1.0)
        return False

    def factors(self):
        return self.loldu_L, (self.loldu_sigma * self.loldu_z - self.loldu_z0)[:, None] * self.loldu_U
