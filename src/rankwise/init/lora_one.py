"""LoRA-One: initialise as one best rank-r step of full-gradient descent; W0 untouched.

"One-Step Full Gradient Suffices for Low-Rank Fine-Tuning, Provably and Efficiently", Zhang et al.,
arXiv 2502.01235. With G = mean ∂L/∂W0 over the calibration batches and the top-r SVD
−G ≈ U_r·S_r·V_rᵀ (randomized, ``torch.svd_lowrank``), S₀ = the largest singular value:

    B = U_r·√S_r / √(S₀·γ),   A = √S_r·V_rᵀ / √(S₀·γ),   γ = 128 (option ``lora_one_gamma``)

so s·B·A = s·U_r·S_r·V_rᵀ/(S₀·γ): a normalised step along −G. W0 is *not* changed: the adapted
model starts one (truncated, normalised) gradient step away from the base model, by design.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .factors import require_lora, set_factors, top_svd
from .registry import register_initialiser


def lora_one_factors(grad: torch.Tensor, rank: int, gamma: float = 128.0) -> tuple[torch.Tensor, torch.Tensor]:
    """B (m, r), A (r, n) from the mean gradient (module docstring)."""
    if gamma <= 0:
        raise ConfigError(f"options['lora_one_gamma'] must be > 0, got {gamma!r}")
    m, n = grad.shape
    u, s, vh = top_svd(-grad, min(rank + 8, m, n))
    u, s, vh = u[:, :rank], s[:rank], vh[:rank]
    norm = (s[0].clamp_min(torch.finfo(s.dtype).tiny) * gamma).sqrt()
    root = s.sqrt()
    return u * root / norm, root[:, None] * vh / norm


@register_initialiser("lora-one", paper="LoRA-One, arXiv 2502.01235", collects="gradient",
                      options={"lora_one_gamma": 128.0})
def init_lora_one(delta, w0: torch.Tensor, calibration: torch.Tensor | None = None, config=None, **_) -> bool:
    """B, A from the SVD of −G (module docstring); W0 untouched."""
    require_lora(delta, "lora-one")
    b, a = lora_one_factors(calibration, delta.rank, float(config.option("lora_one_gamma")))
    set_factors(delta, b, a)
    return False
