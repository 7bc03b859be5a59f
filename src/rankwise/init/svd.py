"""Initialisations from a decomposition of W0; each subtracts its ΔW₀ from W0.

* PiSSA — "PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large Language
  Models", Meng et al., arXiv 2404.02948. Top-r SVD W0 ≈ U_r S_r V_rᵀ;
  B = U_r·√(S_r/s), A = √(S_r/s)·V_rᵀ, so s·B·A = U_r S_r V_rᵀ; W0 ← W0 − s·B·A.
  ``niter`` switches to randomized SVD (the paper's fast variant).
* MiLoRA — "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient LLM
  Finetuning", Wang et al., arXiv 2406.09044. As PiSSA with the r *smallest* triplets.
* OLoRA — "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models", Büyükakyüz,
  arXiv 2406.01775. Q, R = qr(W0); B = Q[:, :r], A = R[:r]; W0 ← W0 − s·B·A (as PEFT).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .registry import fp32_svd, register_initialiser


def _set(delta, b: torch.Tensor, a: torch.Tensor) -> None:
    with torch.no_grad():
        delta.lora_B.copy_(b.to(delta.lora_B.dtype))
        delta.lora_A.copy_(a.to(delta.lora_A.dtype))


@register_initialiser("pissa", paper="PiSSA, arXiv 2404.02948", moves_base=True, needs_svd=True)
def init_pissa(delta, w0: torch.Tensor, niter: int | None = None, **_) -> bool:
    """B = U_r·√(S_r/s), A = √(S_r/s)·V_rᵀ from the top-r SVD (randomized when ``niter`` is set)."""
    u, s, vh = fp32_svd(w0, delta.rank, niter)
    root = (s / delta.scale).sqrt()
    _set(delta, u * root, root[:, None] * vh)
    return True


@register_initialiser("milora", paper="MiLoRA, arXiv 2406.09044", moves_base=True, needs_svd=True)
def init_milora(delta, w0: torch.Tensor, niter: int | None = None, **_) -> bool:
    """As PiSSA with the r smallest singular triplets (exact SVD only)."""
    if niter is not None:
        raise ConfigError("init='milora' needs the smallest singular triplets, which randomized SVD does "
                          "not give; leave init_niter=None")
    u, s, vh = torch.linalg.svd(w0.float(), full_matrices=False)
    r = delta.rank
    root = (s[-r:] / delta.scale).sqrt()
    _set(delta, u[:, -r:] * root, root[:, None] * vh[-r:])
    return True


@register_initialiser("olora", paper="OLoRA, arXiv 2406.01775", moves_base=True)
def init_olora(delta, w0: torch.Tensor, **_) -> bool:
    """B = Q[:, :r], A = R[:r] from W0 = Q·R."""
    q, r = torch.linalg.qr(w0.float())
    _set(delta, q[:, : delta.rank], r[: delta.rank])
    return True
