"""The one Adam update every rankwise optimizer uses (full-rank tensors and low-rank projections alike).

Adam ("Adam: A Method for Stochastic Optimization", Kingma & Ba, arXiv 1412.6980) with decoupled
weight decay ("Decoupled Weight Decay Regularization", Loshchilov & Hutter, arXiv 1711.05101), in the
form galore-torch, Fira and APOLLO use (the legacy ``transformers.AdamW``), so that trajectories match
those references:

    m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
    N = m / (√v + ε)             step_size = lr · √(1−β2ᵗ) / (1−β1ᵗ)      (bias correction)
    W ← W − step_size · update(N)             then   W ← W − lr·λ·W      (decay after the update)

This differs from ``torch.optim.AdamW`` in two details: ε is added to √v before the bias correction
(so the effective ε is ε/√(1−β2ᵗ)), and weight decay is applied after the update instead of before.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def step_size(lr: float, beta1: float, beta2: float, step: int, correct_bias: bool = True) -> float:
    """lr · √(1−β2ᵗ)/(1−β1ᵗ) (or lr without bias correction); ``step`` counts from 1."""
    if not correct_bias:
        return lr
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)


def adam_direction(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, beta1: float, beta2: float,
                   eps: float) -> Tensor:
    """Update the moments in place with ``grad`` and return N = m / (√v + ε) (a new tensor, grad's shape)."""
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    return exp_avg / exp_avg_sq.sqrt().add_(eps)


def decay_(params: list[Tensor], lr: float, weight_decay: float) -> None:
    """Decoupled weight decay after the update: W ← W − lr·λ·W (galore-torch's order)."""
    if weight_decay > 0.0:
        torch._foreach_add_(params, params, alpha=-lr * weight_decay)


def adam_reference(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, lr: float,
                   beta1: float, beta2: float, eps: float, weight_decay: float, correct_bias: bool = True) -> None:
    """One full-rank Adam step on one tensor, written plainly (the reference the fast path is tested against).

    ``step`` is the step count after this update (1 on the first call).
    """
    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = exp_avg_sq.sqrt().add_(eps)
    param.add_(exp_avg / denom, alpha=-step_size(lr, beta1, beta2, step, correct_bias))
    if weight_decay > 0.0:
        param.add_(param, alpha=-lr * weight_decay)


def adam_foreach(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                 step: int, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                 correct_bias: bool = True) -> None:
    """:func:`adam_reference` on many tensors sharing one step count, with multi-tensor (foreach) kernels."""
    if not params:
        return
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size(lr, beta1, beta2, step, correct_bias))
    decay_(params, lr, weight_decay)


def adamw_torch_(param: Tensor, grad: Tensor, state: dict, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float) -> None:
    """One ``torch.optim.AdamW`` step on ``param`` (decay first, ε added to √v̂), creating ``state`` on first use.

    The update :class:`rankwise.optim.LoRAProAdamW` gives the trainable parameters that are not LoRA
    factors (biases, heads), written plainly:

        W ← W·(1 − lr·λ);   m ← β1·m + (1−β1)·g;   v ← β2·v + (1−β2)·g²
        W ← W − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
    """
    if not state:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    state["step"] += 1
    t = float(state["step"])
    param.mul_(1.0 - lr * weight_decay)
    state["exp_avg"].lerp_(grad, 1.0 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1.0 - beta2 ** t)).add_(eps)
    param.addcdiv_(state["exp_avg"], denom, value=-lr / (1.0 - beta1 ** t))
