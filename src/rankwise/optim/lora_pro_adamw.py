"""LoRA-Pro with AdamW: Adam moments of the equivalent full gradient, each step mapped back to the factors.

"LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", Wang, Liang et al., arXiv 2407.18242, the
algorithm "LoRA-Pro with AdamW" that all of the paper's experiments use. Reference code mrflogs/LoRA-Pro
(``lorapro_full_adjustment`` in its patched DeepSpeed ``runtime/zero/stage_1_and_2.py``, followed by a
plain SGD step).

For each adapted layer, ΔW = s·B·A with A (r, n), B (m, r), and raw factor gradients gA = s·BᵀG,
gB = s·G·Aᵀ (G = ∂L/∂W, never formed from the forward pass), at step t:

    gA′ = (1/s²)·(BᵀB)⁻¹·gA,    gB′ = (1/s²)·[I − B(BᵀB)⁻¹Bᵀ]·gB·(AAᵀ)⁻¹      (LoRA-Pro's adjustment)
    g̃  = s·(B·gA′ + gB′·A) = P_B·G + (I − P_B)·G·P_A                       (the equivalent gradient)
    M ← β1·M + (1−β1)·g̃,        V ← β2·V + (1−β2)·g̃²                        (m × n each)
    D  = (M / (1−β1ᵗ)) / (√V / √(1−β2ᵗ) + ε)                                 (the Adam direction in W's space)
    (uA, uB) = LoRA-Pro's closed form with D in the place of G:
               gA = s·BᵀD, gB = s·D·Aᵀ, then gA′ + X·A, gB′ − B·X with X from the Sylvester equation
    A ← A − lr·(uA + λ·A),      B ← B − lr·(uB + λ·B)

where P_B = B(BᵀB)⁻¹Bᵀ and P_A = Aᵀ(AAᵀ)⁻¹A: g̃ is the orthogonal projection of G on the tangent space of
rank-r matrices at B·A, and s·(B·uA + uB·A) is the projection of D on the same space. The Sylvester term
of the adjustment cancels in g̃ (s·(B·X·A − B·X·A) = 0), so g̃ is computed without it, as the reference
does; the closed form with X is solved only for the final step. Grams get a ridge ε·I (``ridge``).

Memory — inherent to this algorithm: M and V are m × n per adapted layer, 2·m·n numbers in the factors'
dtype (8·m·n bytes for fp32 factors), the same optimizer state as full AdamW fine-tuning of those
weights, plus two m × n temporaries (g̃, D) during ``step``. Nothing else is m × n. The memory-light
alternative is LoRA-Pro's SGD form (``options={"lorapro_optimizer": "rule"}``,
:class:`rankwise.optim.LoRAProRule`), which adjusts the factor gradients and leaves the optimizer's state
factor-sized.

Differences from the reference code, each deliberate:

* s is each layer's own scale; the reference hard-codes s = 16/8 (its α = 16, r = 8).
* The reference special-cases its first step (raw gA, no projection, no Sylvester term). With B = 0 —
  LoRA's init, the paper's setting — that equals the general formula, which rankwise applies at every
  step; for inits with B ≠ 0 (PiSSA, …) rankwise's first step is the general one.
* Moments are kept in the factors' dtype and the math runs in fp32 (fp64 stays fp64); the reference
  forms V's increment in bf16.
* Weight decay λ is added to the final factor step, as the reference's SGD with weight decay does
  (its experiments use λ = 0); for other parameters it is AdamW's decoupled decay, the same formula.
* Gradient clipping by a loop acts on the raw factor gradients before they enter the moments; in the
  reference's DeepSpeed integration the clip coefficient from the raw gradients scales the final step.
* Trainable parameters that are not LoRA factors (biases, heads) get ``torch.optim.AdamW``'s update
  with the same hyperparameters (the reference trains the factors only).
* A pair with a missing gradient (either factor's ``.grad`` None) is skipped for that step.

The state dict holds tensors and numbers only (``torch.load(..., weights_only=True)``); a pair's moments
are stored under its A factor. Each factor uses its own param group's lr and weight decay (so LoRA+
ratios from ``rankwise.param_groups`` apply); betas, ε and the ridge come from A's group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from .adam_core import adamw_torch_
from .factored import PairedOptimizer
from .lora_pro import closed_form, grams, projected_grads


def equivalent_gradient(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, scale: float,
                        g: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """g̃ = s·(B·gA′ + gB′·A) (m, n) from the factors, their raw gradients and :func:`lora_pro.grams` ``g``."""
    c1, c2 = projected_grads(a, b, ga, gb, scale, g)
    return torch.cat([b, c2], 1) @ torch.cat([c1, a], 0) * scale  # one (m, 2r) @ (2r, n) product


class LoRAProAdamW(PairedOptimizer):
    """LoRA-Pro's AdamW (see the module docstring): m × n moments of the equivalent gradient per LoRA layer.

    Args:
        model: the adapted model; its LoRA factor pairs (ΔW = s·B·A) are found with their scales.
        params: iterable of parameters or param groups (default: every trainable parameter of ``model``);
            each LoRA pair in it must have both factors.
        lr, betas, eps, weight_decay: AdamW's hyperparameters (the reference: β = (0.9, 0.999), ε = 1e-8).
        ridge: ε·I added to BᵀB and AAᵀ (the reference: 1e-8).

    Raises:
        ConfigError: the model has no B·A adapters, or a pair has only one factor in ``params``.
    """

    def __init__(self, model: nn.Module, params: Iterable[Any] | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 ridge: float = 1e-8):
        super().__init__(model, params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                         "ridge": ridge}, "LoRA-Pro")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group_of = self.group_of()
        for f in self.pairs:
            if f.a.grad is not None and f.b.grad is not None:
                self._pair_step(f.a, f.b, f.scale, group_of[id(f.a)], group_of[id(f.b)])
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is not None and id(p) not in self.factor_ids:
                    adamw_torch_(p, p.grad, self.state[p], g["lr"], b1, b2, g["eps"], g["weight_decay"])
        return loss

    def _pair_step(self, a: nn.Parameter, b: nn.Parameter, scale: float, ga_group: dict, gb_group: dict) -> None:
        dt = acc_dtype(a.dtype)
        beta1, beta2 = ga_group["betas"]
        A, B = a.detach().to(dt), b.detach().to(dt)
        g = grams(A, B, ga_group["ridge"])
        geq = equivalent_gradient(A, B, a.grad.to(dt), b.grad.to(dt), scale, g)   # (m, n)
        state = self.state[a]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros(geq.shape, dtype=a.dtype, device=a.device)
            state["exp_avg_sq"] = torch.zeros(geq.shape, dtype=a.dtype, device=a.device)
        state["step"] += 1
        t = float(state["step"])
        m = state["exp_avg"].to(dt).lerp_(geq, 1.0 - beta1)
        v = state["exp_avg_sq"].to(dt).mul_(beta2).addcmul_(geq, geq, value=1.0 - beta2)
        state["exp_avg"].copy_(m)
        state["exp_avg_sq"].copy_(v)
        # the Adam direction in W's space; geq's storage is reused for it
        d = torch.div(m, 1.0 - beta1 ** t, out=geq).div_(v.sqrt().div_((1.0 - beta2 ** t) ** 0.5).add_(ga_group["eps"]))
        ua, ub = closed_form(A, B, scale * (B.t() @ d), scale * (d @ A.t()), scale, g)
        for p, u, grp in ((a, ua, ga_group), (b, ub, gb_group)):
            p.mul_(1.0 - grp["lr"] * grp["weight_decay"]).add_(u.to(p.dtype), alpha=-grp["lr"])
