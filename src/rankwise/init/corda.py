"""CorDA: context-oriented decomposition — SVD of W0·C, with C the covariance of the layer's inputs.

"CorDA: Context-Oriented Decomposition Adaptation of Large Language Models for Task-Aware
Parameter-Efficient Fine-tuning", Yang et al., arXiv 2406.05223.

With C = (1/N)·Σ_samples X̃ᵀX̃ over the calibration samples (X̃ = a sample's inputs (T, n) divided
by its max value, as the official code and PEFT do), damped until invertible —
Ĉ = C + δ·mean(diag C)·I, δ = 0.01 doubled until ‖Ĉ·Ĉ⁻¹ − I‖_F < 0.05 —

    W0·Ĉ = U·S·V̂ᵀ,   V = (V̂ᵀ·Ĉ⁻¹)ᵀ,   so  W0 = U·S·Vᵀ exactly
    IPM (instruction-previewed): keep the r largest triplets; KPM (knowledge-preserved): the r smallest
    B = U_r·√(S_r/s),  A = √(S_r/s)·V_rᵀ,   W0 ← W0 − s·B·A

Option ``corda_mode`` ("ipm" or "kpm"). Same algorithm and damping as PEFT 0.21's
``preprocess_corda`` + ``init_lora_weights="corda"``; ``tests/init/test_corda.py`` compares the two.
PEFT's hook takes one sample per forward call (batch size 1); rankwise treats every sequence of a
batch as one sample, which is the same for batch size 1, and skips masked (padding) tokens.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .factors import require_lora, set_factors
from .registry import register_initialiser

MODES = ("ipm", "kpm")


def damped_inverse(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĉ, Ĉ⁻¹) with PEFT's/CorDA's damping loop."""
    eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    damp = 0.01
    for _ in range(64):
        fixed = c + eye * (c.diagonal().mean() * damp)
        inv = torch.linalg.inv(fixed)
        if torch.dist(fixed @ inv, eye).item() < 0.05:
            return fixed, inv
        damp *= 2
    raise ConfigError("init='corda': the input covariance could not be inverted even with heavy damping; "
                      "pass more (or more varied) calibration batches")


def corda_factors(w0: torch.Tensor, cov: torch.Tensor, rank: int, scale: float, mode: str = "ipm"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """B (m, r), A (r, n) of CorDA (module docstring) from W0 (m, n) and the input covariance C (n, n)."""
    if mode not in MODES:
        raise ConfigError(f"options['corda_mode'] must be one of {MODES}, got {mode!r}")
    fixed, inv = damped_inverse(cov.float())
    u, s, vh = torch.linalg.svd(w0.float() @ fixed, full_matrices=False)
    v = (vh @ inv).t()                                           # (n, k)
    pick = slice(0, rank) if mode == "ipm" else slice(s.numel() - rank, s.numel())
    root = (s[pick] / scale).sqrt()
    return u[:, pick] * root, root[:, None] * v[:, pick].t()


@register_initialiser("corda", paper="CorDA, arXiv 2406.05223", moves_base=True, collects="inputs-normalised",
                      options={"corda_mode": "ipm"})
def init_corda(delta, w0: torch.Tensor, calibration=None, config=None, **_) -> bool:
    """B, A from the covariance-oriented SVD (module docstring); W0 ← W0 − s·B·A."""
    require_lora(delta, "corda")
    b, a = corda_factors(w0, calibration.covariance(centred=False), delta.rank, delta.scale,
                         config.option("corda_mode"))
    set_factors(delta, b, a)
    return True
