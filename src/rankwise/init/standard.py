"""Data-free initialisations that leave W0 alone: ΔW₀ = 0."""

from __future__ import annotations

import math

import torch

from .registry import register_initialiser


@register_initialiser("default", paper="LoRA, Hu et al., arXiv 2106.09685")
def init_default(delta, w0: torch.Tensor, **_) -> bool:
    """A ~ Kaiming-uniform(a=√5), B = 0 (PEFT's default). For embeddings, as PEFT: A = 0, B ~ N(0, 1).

    A parameterisation with its own reference init (AdaLoRA's P·Λ·Q) provides ``reset_default()``.
    """
    own = delta.default_init(w0)  # forms with a paper-given start (VeRA, SVFit, HRA, …)
    if own is not None:
        return own
    if hasattr(delta, "reset_default"):
        delta.reset_default()
        return False
    with torch.no_grad():
        if delta.geometry.kind == "embedding":
            delta.lora_A.zero_()
            delta.lora_B.normal_()
        else:
            # = kaiming_uniform_(a=√5): gain √(2/(1+5)), bound gain·√(3/n) = 1/√n
            bound = 1.0 / math.sqrt(delta.lora_A.shape[1])
            delta.lora_A.uniform_(-bound, bound)
            delta.lora_B.zero_()
    return False


@register_initialiser("gaussian", paper="LoRA, Hu et al., arXiv 2106.09685 (§4)")
def init_gaussian(delta, w0: torch.Tensor, **_) -> bool:
    """A ~ N(0, 1/r²) (PEFT's ``init_lora_weights="gaussian"``), B = 0."""
    with torch.no_grad():
        torch.nn.init.normal_(delta.lora_A, std=1.0 / delta.rank)
        delta.lora_B.zero_()
    return False
