"""NLoRA: the r×r-core ("BCA" / SLoRA) shape initialised from Nyström-style blocks of W0.

"NLoRA: Nyström-Initiated Low-Rank Adaptation for Large Language Models", Guo et al., arXiv 2502.14482.
With index sets I = J = {1..r} and W0 (m, n) in the matrix view, the official code
(TracyGuo2001/NLoRA, ``nlora_init``) sets

    B = W0[:, J] (m, r),   R = W0[I, J] (r, r),   A = W0[I, :] (r, n),   ΔW = s·B·R·A,   W0 untouched

all three trainable (use ``parameterisation="bca"``; with ``"lora-xs"`` only R trains, the paper's
IntTune). Note: the textbook Nyström approximation W0 ≈ W0[:, J]·W0[I, J]⁺·W0[I, :] uses the
*pseudo-inverse* of the core; the official code uses W0[I, J] itself (the pseudo-inverse line is
commented out there), and so does rankwise, so that results match the paper's code.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .factors import require_core, set_factors
from .registry import register_initialiser


@register_initialiser("nlora", paper="NLoRA, arXiv 2502.14482")
def init_nlora(delta, w0: torch.Tensor, **_) -> bool:
    """B = W0[:, :r], R = W0[:r, :r], A = W0[:r, :] (official code); W0 untouched."""
    require_core(delta, "nlora")
    r = delta.rank
    if r > min(w0.shape):
        raise ConfigError(f"init='nlora' needs rank ≤ min(out, in) = {min(w0.shape)}, got {r}")
    set_factors(delta, w0[:, :r], w0[:r, :], w0[:r, :r])
    return False
