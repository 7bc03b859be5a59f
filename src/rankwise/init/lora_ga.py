"""LoRA-GA: initialise from the SVD of the full-weight gradient, and move W0 so the model starts unchanged.

"LoRA-GA: Low-Rank Adaptation with Gradient Approximation", Wang, Yu & Li, arXiv 2407.05000.

With G = mean ∂L/∂W0 over the calibration batches (m, n) and its randomized top-4r SVD
G ≈ U·S·Vᵀ (``torch.svd_lowrank(G, q=4r, niter=4)``, as the official code):

    A = c·V[:, :r]ᵀ (r, n),   B = c·U[:, r:2r] (m, r)     (direction "ArB2r")
    c = m^¼ / √γ  ("stable" scale, γ = 16),   W0 ← W0 − s·B·A

so that the first step of LoRA approximates the first step of full fine-tuning along G, and the
adapted model starts equal to the base model. Options (``LoRAConfig.options``):
``lora_ga_direction`` ("ArB2r", "A2rBr", "ArBr"), ``lora_ga_scale`` ("stable", "gd": divide both by
s, "unit": no scaling), ``lora_ga_gamma`` (γ).

Difference from PEFT 0.21's ``init_lora_weights="lora_ga"`` (documented, intentional): PEFT
multiplies B by the matching singular values S[r:2r] and applies the stable scale to B only;
rankwise follows the paper's §3.3 and the official code (Outsider565/LoRA-GA): both factors get
m^¼/√γ and no singular values. Both use the same mean gradient and the same SVD, so B's columns
and A's rows span the same subspaces (``tests/init/test_lora_ga.py`` checks this against PEFT).
The gradient is computed in eval mode (no dropout); PEFT uses train mode.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .factors import require_lora, set_factors, top_svd
from .registry import register_initialiser

DIRECTIONS = ("ArB2r", "A2rBr", "ArBr")
SCALES = ("stable", "gd", "unit")


def lora_ga_factors(grad: torch.Tensor, rank: int, scale: float, direction: str = "ArB2r",
                    mode: str = "stable", gamma: float = 16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """B (m, r), A (r, n) from the mean gradient ``grad`` (m, n); see the module docstring."""
    m, n = grad.shape
    if 2 * rank > min(m, n):
        raise ConfigError(f"init='lora-ga' needs 2·rank ≤ min(out, in) = {min(m, n)} (it splits the top 2r singular "
                          f"vectors of the gradient between B and A); got rank {rank}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"options['lora_ga_direction'] must be one of {DIRECTIONS}, got {direction!r}")
    if mode not in SCALES:
        raise ConfigError(f"options['lora_ga_scale'] must be one of {SCALES}, got {mode!r}")
    u, _, vh = top_svd(grad, min(4 * rank, m, n))
    r = rank
    if direction == "ArB2r":
        b, a = u[:, r:2 * r], vh[:r]
    elif direction == "A2rBr":
        b, a = u[:, :r], vh[r:2 * r]
    else:  # "ArBr": interleaved
        b, a = u[:, 0:2 * r:2], vh[1:2 * r:2]
    if mode == "stable":
        c = m ** 0.25 / gamma ** 0.5
        b, a = b * c, a * c
    elif mode == "gd":
        b, a = b / scale, a / scale
    return b, a


@register_initialiser("lora-ga", paper="LoRA-GA, arXiv 2407.05000", moves_base=True, collects="gradient",
                      options={"lora_ga_direction": "ArB2r", "lora_ga_scale": "stable", "lora_ga_gamma": 16.0})
def init_lora_ga(delta, w0: torch.Tensor, calibration: torch.Tensor | None = None, config=None, **_) -> bool:
    """B, A from the gradient SVD (see the module docstring); W0 ← W0 − s·B·A."""
    require_lora(delta, "lora-ga")
    b, a = lora_ga_factors(calibration, delta.rank, delta.scale, config.option("lora_ga_direction"),
                           config.option("lora_ga_scale"), float(config.option("lora_ga_gamma")))
    set_factors(delta, b, a)
    return True
