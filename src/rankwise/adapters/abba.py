"""ABBA: the Hadamard product of two low-rank products, applied through Khatri-Rao factors.

"ABBA: Highly Expressive Hadamard Product Adaptation for Large Language Models", Singhal,
Ponkshe, Vartak & Vepakomma, arXiv 2505.14238.

    ΔW = s·(B₁·A₁) ⊙ (B₂·A₂),   B₁ (m, r₁), A₁ (r₁, n), B₂ (m, r₂), A₂ (r₂, n),   s = α/√(r₁·r₂)

(r₁ + r₂)·(m + n) trainable numbers; ΔW can have rank r₁·r₂. The identity
(B₁A₁) ⊙ (B₂A₂) = (B₁ ⊙ᵣ B₂)·(A₁ ⊙ᵣ A₂)ᵀ-form, where ⊙ᵣ is the row-wise Khatri-Rao product
(B₁ ⊙ᵣ B₂)[i, (a, b)] = B₁[i, a]·B₂[i, b] and (A₁ ⊙ A₂)[(a, b), j] = A₁[a, j]·A₂[b, j], gives a
factored ΔW = s·B_kr·A_kr with inner size r₁·r₂: the forward costs O(T·r₁r₂·(m+n)) and never forms
an m × n matrix. Init (the paper's): B₁·A₁ = the top-r₁ SVD of W0 (B₁ = U√S, A₁ = √S·Vᵀ), A₂
Kaiming-uniform, B₂ = 0, so ΔW starts at 0 and W0 is untouched. ``config.rank`` is r₁ + r₂
(LoRA's parameter budget at that rank); ``abba_r1``/``abba_r2`` (0 = half each) override. The
scale α/√(r₁·r₂) is rankwise's choice (rsLoRA-style for the product's rank r₁·r₂).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from ..init.registry import fp32_svd
from .factored import FactoredDelta

OPTIONS = {"abba_r1": 0, "abba_r2": 0}


class ABBA(FactoredDelta):
    """ΔW = s·(B₁A₁) ⊙ (B₂A₂); trainable ``abba_B1`` (m, r₁), ``abba_A1`` (r₁, n), ``abba_B2`` (m, r₂), ``abba_A2``."""

    fast_params = ("abba_B1", "abba_B2")

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        r1, r2 = int(ctx.option("abba_r1")) or rank // 2, int(ctx.option("abba_r2")) or rank - rank // 2
        if r1 < 1 or r2 < 1:
            raise ConfigError(f"ABBA needs r₁, r₂ ≥ 1 (rank ≥ 2 or abba_r1/abba_r2 set), got rank={rank}")
        alpha = scale * rank  # the config's α (scale was α/r)
        super().__init__(geometry, rank, alpha / math.sqrt(r1 * r2))
        m, n = geometry.out_features, geometry.in_features
        self.abba_B1 = nn.Parameter(torch.empty(m, r1, dtype=dtype, device=device))
        self.abba_A1 = nn.Parameter(torch.empty(r1, n, dtype=dtype, device=device))
        self.abba_B2 = nn.Parameter(torch.empty(m, r2, dtype=dtype, device=device))
        self.abba_A2 = nn.Parameter(torch.empty(r2, n, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        r1 = self.abba_A1.shape[0]
        u, s, vh = fp32_svd(w0, r1, None)
        root = s.sqrt()
        with torch.no_grad():
            self.abba_B1.copy_((u * root).to(self.abba_B1.dtype))
            self.abba_A1.copy_((root[:, None] * vh).to(self.abba_A1.dtype))
            nn.init.kaiming_uniform_(self.abba_A2, a=math.sqrt(5))
            self.abba_B2.zero_()
        return False

    def factors(self):
        m, n = self.geometry.out_features, self.geometry.in_features
        b = (self.abba_B1[:, :, None] * self.abba_B2[:, None, :]).reshape(m, -1)   # (m, r₁r₂)
        a = (self.abba_A1[:, None, :] * self.abba_A2[None, :, :]).reshape(-1, n)   # (r₁r₂, n)
        return b, a
