"""AltLoRA's optimizer: alternating least-squares steps of A and B with low-rank momentum carried across bases.

"AltLoRA: Towards Better Gradient Approximation in Low-Rank Adaptation with Alternating Projections",
Yu, Wang, Chen & Xue, arXiv 2505.12455: Algorithm 1 (AltLoRA, momentum) and Algorithm 2 (AltLoRA+, with
a second moment). Reference code LucasXinYu/AltLoRA (``optimizer_new.py``: ``altlora``, ``altlora_plus``;
hyperparameters from ``logtrainer.py``). Where the paper and the code could differ, rankwise follows the code.

Each step moves A, then B (the Gauss–Seidel order of the reference code), per adapted layer
(ΔW = s·B·A, A (r, n), B (m, r); gA = s·BᵀG, gB = s·G·Aᵀ from the step's one backward pass):

    A half-step, with the current B (B′ = B at the previous A half-step; zero before the first):
        g̃A = (1/s²)·(BᵀB)⁻¹·gA                       = argmin ‖s·B·g̃A − G‖_F / s
        M_A ← β1·(BᵀB)⁻¹Bᵀ·B′·M_A + (1−β1)·g̃A        (the momentum transported from basis B′ to B)
        A ← A − lr/(1−β1ᵗ)·M_A,  then A ← A − lr·λ·A
    B half-step, with the new A (A′ = A at the previous B half-step):
        g̃B = (1/s²)·gB·(AAᵀ)⁻¹
        M_B ← β1·M_B·A′Aᵀ(AAᵀ)⁻¹ + (1−β1)·g̃B
        B ← B − lr/(1−β1ᵗ)·M_B,  then B ← B − lr·λ·B

In W's space this is a projected heavy-ball method: with Φ_A = s·B′·M_A the full-matrix momentum of the
A steps, the transport is Φ_A ← P_B·(β1·Φ_A + (1−β1)·G) with P_B = B(BᵀB)⁻¹Bᵀ — the momentum stays in
r × n (plus the r × m basis it lives in) instead of m × n. Likewise Φ_B = s·M_B·A′ is multiplied by
P_A = Aᵀ(AAᵀ)⁻¹A from the right. Grams get a ridge ρ·I (option ``altlora_ridge``; the reference's 1e-5).

``adaptive=True`` is AltLoRA+ (option ``altlora_optimizer="adam"``): an elementwise second moment of the
scaled gradient in factor space, not transported and not bias-corrected, as in the reference code:

    V_A ← β2·V_A + (1−β2)·g̃A²;    N_A = β1·(BᵀB)⁻¹Bᵀ·B′·M_A + (1−β1)·g̃A
    A ← A − lr/(1−β1ᵗ)·N_A/(√V_A + ε),  then A ← A − lr·λ·A;    M_A ← β1·M_A + (1−β1)·g̃A

(the stored M_A is the untransported average, exactly as the reference's ``altlora_plus`` stores it,
while the step uses the transported one; likewise for B).

State per pair: M_A (r, n), M_B (m, r), the bases B′ (m, r) and A′ (r, n), plus V_A, V_B for AltLoRA+:
twice (three times) the LoRA parameters, nothing m × n.

Reading of the sources, stated where it matters:

* Both half-steps use the gradients of the step's single backward pass; B's half-step uses the new A
  for its preconditioner and transport (the reference's ``altlora`` as its trainer runs it, ``alt=False``).
  The paper's alternation of which factor is trainable (the trainer's ``alt=True``, every 10 steps) is
  off in the released configuration and is not reproduced; the one-factor-per-step gradient rule is
  ``options={"altlora_optimizer": "rule"}``.
* The paper scales the projected gradients by 1/s², making the step in W independent of s (its
  "robustness to scaling"); the reference code omits 1/s², i.e. runs with lr·s². rankwise keeps 1/s².
* Weight decay after the update, W ← W − lr·λ·W, as the reference (its trainer uses λ = 1e-5;
  rankwise takes λ from the loop). Defaults β = (0.9, 0.999), ε = 1e-4, ρ = 1e-5 are the trainer's.
* Trainable parameters that are not LoRA factors (biases, heads, embeddings in ``modules_to_save``) get
  ``torch.optim.AdamW``'s update (ε = 1e-8) with the same lr and decay (the reference leaves them
  untouched). The preconditioned factor steps are scale-free, so AltLoRA runs at AdamW-sized learning
  rates (the reference's scripts use 5e-5 on Llama-3-8B), where plain heavy-ball momentum on a head
  would barely move it. A factor without a gradient skips its half-step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from .adam_core import adamw_torch_
from .factored import PairedOptimizer, ridge_eye

NON_FACTOR_EPS = 1e-8  # torch.optim.AdamW's default, for the parameters outside any B·A pair


class AltLoRAOptimizer(PairedOptimizer):
    """AltLoRA (``adaptive=False``, Algorithm 1) or AltLoRA+ (``adaptive=True``, Algorithm 2); see the module doc.

    Args:
        model: the adapted model; its LoRA factor pairs (ΔW = s·B·A) are found with their scales.
        params: iterable of parameters or param groups (default: every trainable parameter of ``model``);
            each LoRA pair in it must have both factors.
        lr, betas, eps, weight_decay: step size, (β1, β2), ε (AltLoRA+ only), decoupled weight decay λ.
        ridge: ρ·I added to BᵀB and AAᵀ.
        adaptive: keep the second moment (AltLoRA+).

    Raises:
        ConfigError: the model has no B·A adapters, or a pair has only one factor in ``params``.
    """

    def __init__(self, model: nn.Module, params: Iterable[Any] | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4, weight_decay: float = 0.0,
                 ridge: float = 1e-5, adaptive: bool = False):
        super().__init__(model, params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                         "ridge": ridge, "adaptive": bool(adaptive)}, "AltLoRA")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group_of = self.group_of()
        for f in self.pairs:
            if f.a.grad is not None:   # A first, with the current B
                self._half_step(f.a, f.a.grad, f.b, "A", f.scale, group_of[id(f.a)])
            if f.b.grad is not None:   # then B, with the A just updated
                self._half_step(f.b, f.b.grad, f.a, "B", f.scale, group_of[id(f.b)])
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None and id(p) not in self.factor_ids:
                    adamw_torch_(p, p.grad, self.state[p], g["lr"], *g["betas"], NON_FACTOR_EPS, g["weight_decay"])
        return loss

    def _half_step(self, p: nn.Parameter, grad: torch.Tensor, other: nn.Parameter, which: str, scale: float,
                   group: dict) -> None:
        """One factor's step: ``p`` is A (``other`` = B) or B (``other`` = A), the other factor held fixed."""
        dt = acc_dtype(p.dtype)
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["basis"] = torch.zeros_like(other, memory_format=torch.preserve_format)
            if group["adaptive"]:
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        g, m = grad.to(dt), state["exp_avg"].to(dt)
        if which == "A":
            o, prev = other.detach().to(dt), state["basis"].to(dt)
            k = torch.linalg.inv(o.t() @ o + ridge_eye(o.shape[1], group["ridge"], o))   # (BᵀB + ρI)⁻¹
            gt = k @ g / scale ** 2
            moved = (k @ (o.t() @ prev)) @ m                                                 # (BᵀB)⁻¹Bᵀ·B′·M_A
        else:
            o, prev = other.detach().to(dt), state["basis"].to(dt)
            k = torch.linalg.inv(o @ o.t() + ridge_eye(o.shape[0], group["ridge"], o))   # (AAᵀ + ρI)⁻¹
            gt = g @ k / scale ** 2
            moved = m @ ((prev @ o.t()) @ k)                                                 # M_B·A′Aᵀ(AAᵀ)⁻¹
        heavy = moved.mul_(beta1).add_(gt, alpha=1.0 - beta1)
        if group["adaptive"]:
            v = state["exp_avg_sq"].to(dt).mul_(beta2).addcmul_(gt, gt, value=1.0 - beta2)
            state["exp_avg_sq"].copy_(v)
            update = heavy / v.sqrt().add_(group["eps"])
            state["exp_avg"].copy_(m.mul_(beta1).add_(gt, alpha=1.0 - beta1))   # untransported, as the reference
        else:
            update = heavy
            state["exp_avg"].copy_(heavy)
        p.add_(update.to(p.dtype), alpha=-group["lr"] / (1.0 - beta1 ** t))
        if group["weight_decay"] > 0.0:
            p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        state["basis"].copy_(other)
