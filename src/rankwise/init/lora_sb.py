"""LoRA-SB: the LoRA-XS shape initialised from a sign-gradient approximation of the first full update.

"Initialization Using Update Approximation is a Silver Bullet for Extremely Efficient Low-Rank
Fine-Tuning", Ponkshe et al., arXiv 2411.19557. With G = Σ ∂L/∂W0 over the calibration batches
(the paper uses ~50 samples), the first full fine-tuning update of Adam is approximated by

    ΔW̃ = −η·sign(G),   ΔW̃ ≈ U_r·S_r·V_rᵀ (top-r SVD)
    B = U_r (frozen),  A = V_rᵀ (frozen),  R = S_r/s (trainable, diagonal at init)

so s·B·R·A is the best rank-r approximation of ΔW̃ and only R (r²) is trained. W0 is untouched:
the adapted model starts at the approximated first step. Option ``lora_sb_lr`` (η, default 1e-4).
Needs ``parameterisation="lora-xs"`` (or ``"bca"``).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .factors import require_core, set_factors
from .registry import fp32_svd, register_initialiser


def lora_sb_factors(grad: torch.Tensor, rank: int, scale: float, lr: float, niter: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B (m, r), A (r, n), R (r, r) from the gradient (module docstring)."""
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"options['lora_sb_lr'] must be a positive number, got {lr!r}")
    update = -lr * torch.sign(grad.float())
    u, s, vh = fp32_svd(update, rank, niter)
    return u, vh, torch.diag(s / scale)


@register_initialiser("lora-sb", paper="LoRA-SB, arXiv 2411.19557", needs_svd=True, collects="gradient",
                      options={"lora_sb_lr": 1e-4})
def init_lora_sb(delta, w0: torch.Tensor, niter: int | None = None, calibration: torch.Tensor | None = None,
                 config=None, **_) -> bool:
    """B = U_r, A = V_rᵀ, R = diag(S_r)/s from the SVD of −η·sign(G)."""
    require_core(delta, "lora-sb")
    b, a, core = lora_sb_factors(calibration, delta.rank, delta.scale, config.option("lora_sb_lr"), niter)
    set_factors(delta, b, a, core)
    return False
