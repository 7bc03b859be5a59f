"""LoRA-XS init: frozen B, A from the top-r SVD of W0, a tiny random trainable core R.

"LoRA-XS: Low-Rank Adaptation with Extremely Small Number of Parameters", Bałazy et al.,
arXiv 2405.17604. With W0 ≈ U_r·S_r·V_rᵀ (top-r SVD):

    B = U_r·S_r (m, r, frozen),   A = V_rᵀ (r, n, frozen),   R ~ N(0, σ²) (r, r, trainable),  σ = 1e-5

so ΔW = s·B·R·A ≈ 0 at init and W0 is untouched. Option ``xs_core_std`` (σ). Needs the
``"lora-xs"`` (or ``"bca"``) parameterisation; ``init_niter`` switches to randomized SVD.
"""

from __future__ import annotations

import torch

from .factors import require_core, set_factors
from .registry import fp32_svd, register_initialiser


@register_initialiser("lora-xs", paper="LoRA-XS, arXiv 2405.17604", needs_svd=True, options={"xs_core_std": 1e-5})
def init_lora_xs(delta, w0: torch.Tensor, niter: int | None = None, config=None, **_) -> bool:
    """B = U_r·S_r, A = V_rᵀ, R ~ N(0, σ²)."""
    require_core(delta, "lora-xs")
    u, s, vh = fp32_svd(w0, delta.rank, niter)
    std = float(config.option("xs_core_std")) if config is not None else 1e-5
    core = torch.randn(delta.rank, delta.rank) * std
    set_factors(delta, u * s, vh, core)
    return False
