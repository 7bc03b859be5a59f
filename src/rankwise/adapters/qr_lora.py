"""QR-LoRA: train one coefficient per basis of a QR decomposition of W0.

"QR-LoRA: QR-Based Low-Rank Adaptation for Efficient Fine-Tuning of Large Language Models",
Liang & Bharadwaj, arXiv 2508.21810.

    W0·Π = Q·R,   ΔW = Σᵢ₌₁ʳ λᵢ·Qᵢ·(R·Πᵀ)ᵢ = Q_r·diag(λ)·(R·Πᵀ)_r

with Q's first r orthonormal columns (m, r), the matching rows of R (r, n) mapped back through
the column permutation Π, and only λ trained: r numbers per layer, λ = 0 at start. The paper uses
QR with column pivoting; PyTorch has no pivoted QR, so Π here is a static pivot that sorts W0's
columns by decreasing norm (the first step of the pivoted algorithm), a documented difference.
Scale s = α/r.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from .factored import FactoredDelta


def pivoted_qr(w0: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q_r (m, r), (R·Πᵀ)_r (r, n)) with Π sorting columns by decreasing norm, in fp32."""
    w = w0.float()
    perm = torch.argsort(torch.linalg.vector_norm(w, dim=0), descending=True)
    q, r = torch.linalg.qr(w[:, perm])
    rows = torch.empty_like(r[:rank])
    rows[:, perm] = r[:rank]  # undo the permutation: W0 = Q·(R·Πᵀ)
    return q[:, :rank], rows


class QRLoRA(FactoredDelta):
    """ΔW = s·Q_r·diag(λ)·R_r; trainable ``qr_lambda`` (r,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None):
        super().__init__(geometry, rank, scale)
        m, n = geometry.out_features, geometry.in_features
        self.register_buffer("qr_Q", torch.zeros(m, rank, dtype=dtype, device=device))
        self.register_buffer("qr_R", torch.zeros(rank, n, dtype=dtype, device=device))
        self.qr_lambda = nn.Parameter(torch.zeros(rank, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        q, r = pivoted_qr(w0, self.rank)
        with torch.no_grad():
            self.qr_Q.copy_(q.to(self.qr_Q.dtype))
            self.qr_R.copy_(r.to(self.qr_R.dtype))
            self.qr_lambda.zero_()
        return False

    def factors(self):
        return self.qr_Q, self.qr_lambda[:, None] * self.qr_R
