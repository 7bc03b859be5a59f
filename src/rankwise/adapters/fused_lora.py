"""Fused LoRA (and DoRA) linear: y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ as one autograd node.

The plain path (base layer forward, then the adapter's ``add_delta``) is the reference; this one
computes the same outputs and gradients with less memory traffic, for frozen ``nn.Linear`` and
transformers ``Conv1D`` layers:

* forward: the adapter's product is accumulated into the base output in place (``addmm_``);
* backward: the input gradient ∂L/∂x = g·W0 + s·(g·B)·A is built in one buffer (``addmm_``)
  instead of two (T, n) buffers summed by autograd, and only x and h = x·Aᵀ (T, r) are saved.

Shapes (T tokens): x (T, n), W0 (m, n) in the matrix view, A (r, n), B (m, r), g = ∂L/∂y (T, m).
``FusedDoRALinear`` adds DoRA's per-channel gain on top. ``tests/adapters/test_fused_lora.py``
checks both against the plain path.
"""

from __future__ import annotations

import torch


class FusedLoRALinear(torch.autograd.Function):
    """``apply(x, w_t, bias, lora_a, lora_b, scale)`` with ``w_t`` = W0ᵀ (n, m), frozen."""

    @staticmethod
    def forward(ctx, x, w_t, bias, lora_a, lora_b, scale):
        x2 = x.reshape(-1, x.shape[-1])                                     # (T, n)
        h = x2 @ lora_a.t()                                                 # (T, r)
        out = torch.addmm(bias, x2, w_t) if bias is not None else x2 @ w_t  # (T, m)
        out.addmm_(h, lora_b.t(), alpha=scale)
        ctx.save_for_backward(x2, h, w_t, lora_a, lora_b)
        ctx.scale = scale
        ctx.x_shape = x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, g):
        x2, h, w_t, lora_a, lora_b = ctx.saved_tensors
        s = ctx.scale
        g2 = g.reshape(-1, g.shape[-1])                                     # (T, m)
        gh = (g2 @ lora_b).mul_(s)                                          # (T, r)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g2 @ w_t.t()).addmm_(gh, lora_a).view(ctx.x_shape)     # g·W0 + s·(g·B)·A
        grad_a = gh.t() @ x2 if ctx.needs_input_grad[3] else None           # (r, n)
        grad_b = (g2.t() @ h).mul_(s) if ctx.needs_input_grad[4] else None  # (m, r)
        return grad_x, None, None, grad_a, grad_b, None


class FusedDoRALinear(torch.autograd.Function):
    """DoRA on top of the fused LoRA linear: y = x·W0ᵀ + s·(x·Aᵀ)·Bᵀ; out = γ ⊙ y + b, γ = m / ‖W0 + sBA‖.

    ``apply(x, w_t, bias, lora_a, lora_b, magnitude, norms, scale)``; ``norms`` (m,) is detached
    (DoRA §4.3), so γ's gradient flows only into the magnitude: ∂L/∂m = Σ_t g ⊙ y / norms.
    Saves x, h = x·Aᵀ and y (T, m) — y is what the magnitude's gradient needs.
    """

    @staticmethod
    def forward(ctx, x, w_t, bias, lora_a, lora_b, magnitude, norms, scale):
        x2 = x.reshape(-1, x.shape[-1])                                     # (T, n)
        h = x2 @ lora_a.t()                                                 # (T, r)
        y = (x2 @ w_t).addmm_(h, lora_b.t(), alpha=scale)                   # (T, m), no bias
        gain = magnitude / norms                                            # (m,)
        out = torch.addcmul(bias, y, gain) if bias is not None else y * gain
        ctx.save_for_backward(x2, h, y, w_t, lora_a, lora_b, gain, norms)
        ctx.scale = scale
        ctx.x_shape = x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, g):
        x2, h, y, w_t, lora_a, lora_b, gain, norms = ctx.saved_tensors
        s = ctx.scale
        g2 = g.reshape(-1, g.shape[-1])                                     # (T, m)
        grad_m = (g2 * y).sum(0).div_(norms) if ctx.needs_input_grad[5] else None
        gy = g2 * gain                                                      # ∂L/∂y
        gh = (gy @ lora_b).mul_(s)                                          # (T, r)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (gy @ w_t.t()).addmm_(gh, lora_a).view(ctx.x_shape)
        grad_a = gh.t() @ x2 if ctx.needs_input_grad[3] else None
        grad_b = (gy.t() @ h).mul_(s) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, grad_m, None, None
