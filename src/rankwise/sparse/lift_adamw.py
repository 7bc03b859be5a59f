"""LIFTAdamW: AdamW whose state for a LIFT target weight is two (K,) vectors, not two m×n matrices.

"LIFT the Veil for the Truth: Principal Weights Emerge after Rank Reduction for Reasoning-Focused
Supervised Fine-Tuning", Liu et al., arXiv 2506.00772: only the K = r·(m + n) principal entries of W
train, so only they need Adam moments. For every target weight, with idx its current mask (K flat
positions, from :class:`~rankwise.sparse.LIFTSchedule`):

    g = grad[idx]     w = W[idx]                              (gathers, (K,) each)
    w ← w·(1 − lr·λ)                                          (decoupled decay, trained entries only)
    m ← β1·m + (1−β1)·g      v ← β2·v + (1−β2)·g²            (m, v: (K,) state)
    w ← w − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
    W[idx] ← w                                                (scatter; every other entry of W is untouched)

This is ``torch.optim.AdamW``'s update (decay before the step, ε after the bias correction) restricted
to the mask, so it follows the dense reference path (any optimizer, gradients masked by the schedule)
step for step while holding 2·K floats per layer instead of 2·m·n. Every other parameter (a
``modules_to_save`` head, biases, norms) gets the same AdamW, dense. The Adam arithmetic is
:mod:`rankwise.optim.adam_core`'s (its ε is added before the bias correction, so this passes
ε·√(1−β2ᵗ), the same number); ``foreach=True`` uses its multi-tensor kernels, ``foreach=False`` its
plain per-tensor reference.

When the schedule refreshes the masks it calls :meth:`LIFTAdamW.remap`: moments of entries in both
the old and the new mask are kept, entries new to the mask start at zero, exactly what the dense path
does by zeroing moments outside the new mask. The step count is per parameter, as in torch.

    schedule = rankwise.sparse.lift(model, LIFTConfig(rank=16))
    opt = rankwise.sparse.LIFTAdamW(rankwise.trainable_parameters(model), schedule, lr=1e-4, weight_decay=0.01)
    # loop: backward; schedule.before_step(step); opt.step(); schedule.after_step(step, opt); opt.zero_grad()

Memory: the moments are sparse, but W's gradient is still computed in full by autograd (m·n per
target, freed by ``zero_grad``); the step reads it at the K mask positions only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..optim.adam_core import adam_foreach, adam_reference
from .lift import LIFTSchedule


def remap_entries(values: Tensor, old: Tensor, new: Tensor) -> Tensor:
    """Values at sorted indices ``old`` → values at sorted indices ``new``: kept where both hold the index, else 0."""
    out = values.new_zeros(new.shape)
    if old.numel() == 0 or new.numel() == 0:
        return out
    pos = torch.searchsorted(old, new).clamp_(max=old.numel() - 1)
    hit = old[pos] == new
    out[hit] = values[pos[hit]]
    return out


class LIFTAdamW(torch.optim.Optimizer):
    """AdamW with (K,) moments for LIFT target weights and dense moments for every other parameter.

    Args:
        params: parameters or param groups, e.g. ``rankwise.trainable_parameters(model)``; must include
            every target weight of ``schedule``.
        schedule: the :class:`~rankwise.sparse.LIFTSchedule` whose masks select the trained entries.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (decay touches only trained entries of
            target weights).
        foreach: multi-tensor kernels (True) or the plain per-tensor reference path (False).

    State per target weight: ``step`` (int), ``exp_avg`` and ``exp_avg_sq`` ((K,), W's dtype) and
    ``mask_version`` (the schedule's refresh count the moments are aligned to); plain tensors and
    numbers only, so ``state_dict()`` loads with ``torch.load(weights_only=True)``.
    """

    def __init__(self, params, schedule: LIFTSchedule, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool = True):
        if not isinstance(schedule, LIFTSchedule):
            raise ConfigError(f"LIFTAdamW needs the LIFTSchedule returned by rankwise.sparse.lift(), got "
                              f"{type(schedule).__name__}")
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"LIFTAdamW: need lr ≥ 0, eps ≥ 0, weight_decay ≥ 0 and betas in [0, 1); got lr={lr}, "
                              f"eps={eps}, weight_decay={weight_decay}, betas={tuple(betas)}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      foreach=bool(foreach)))
        self.schedule = schedule
        self._layers = {id(layer.weight): layer for layer in schedule.layers}
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        for layer in schedule.layers:
            if id(layer.weight) not in mine:
                raise ConfigError(f"LIFT target weight {layer.name!r} is not among the optimizer's params; pass "
                                  "rankwise.trainable_parameters(model) (it includes every target weight)")
            if not layer.weight.is_contiguous():
                raise ConfigError(f"LIFT target weight {layer.name!r} is not contiguous; LIFTAdamW scatters into "
                                  "its storage, so make it contiguous before lift() "
                                  "(module.weight.data = module.weight.data.contiguous())")

    @torch.no_grad()
    def remap(self, weight: Tensor, old: Tensor, new: Tensor) -> None:
        """Move ``weight``'s (K,) moments from mask ``old`` to mask ``new`` (the schedule calls this at a refresh)."""
        state = self.state.get(weight)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = remap_entries(state[key], old, new)
            state["mask_version"] = self.schedule.refreshes

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, layer in self._targets():  # every check before any parameter moves
            state = self.state.get(p)
            if state:
                self._check_aligned(layer, state)
        for group in self.param_groups:
            # by step count (usually one bucket): [target layer or None, values, grads, exp_avgs, exp_avg_sqs]
            buckets: dict[int, list[list]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                layer = self._layers.get(id(p))
                if layer is None:
                    value, grad = p, p.grad
                else:
                    value = p.view(-1).index_select(0, layer.flat)           # (K,) copy of the trained entries
                    grad = p.grad.reshape(-1).index_select(0, layer.flat)    # (K,) gathered gradient
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(value), exp_avg_sq=torch.zeros_like(value))
                    if layer is not None:
                        state["mask_version"] = self.schedule.refreshes
                state["step"] += 1
                bucket = buckets.setdefault(state["step"], [[], [], [], [], []])
                for lst, x in zip(bucket, (layer, value, grad, state["exp_avg"], state["exp_avg_sq"]), strict=True):
                    lst.append(x)
            for step, (layers, values, grads, exp_avgs, exp_avg_sqs) in buckets.items():
                self._update(values, grads, exp_avgs, exp_avg_sqs, step, group)
                for layer, value in zip(layers, values, strict=True):
                    if layer is not None:  # scatter back: no other entry of W is written
                        layer.weight.view(-1).index_copy_(0, layer.flat, value)
        return loss

    def _targets(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse:
                        raise ConfigError("LIFTAdamW does not support sparse gradients")
                    layer = self._layers.get(id(p))
                    if layer is not None:
                        yield p, layer

    def _check_aligned(self, layer, state: dict[str, Any]) -> None:
        if state.get("mask_version") != self.schedule.refreshes or state["exp_avg"].numel() != layer.idx.numel():
            raise ConfigError(f"LIFTAdamW's moments of {layer.name!r} belong to another mask: the schedule was "
                              "refreshed without this optimizer (or a state of another run was loaded); call "
                              "schedule.after_step(step, optimizer) / schedule.refresh(optimizer) with this LIFTAdamW")

    @staticmethod
    def _update(values: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                step: int, group: dict[str, Any]) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        # torch.optim.AdamW adds ε after dividing √v by √(1−β2ᵗ); adam_core adds it before: scale ε to match
        eps = group["eps"] * math.sqrt(1.0 - beta2 ** step)
        if group["foreach"]:
            if wd > 0.0:  # torch.optim.AdamW's order: decay first, then the Adam step
                torch._foreach_mul_(values, 1.0 - lr * wd)
            adam_foreach(values, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, 0.0)
        else:
            for w, g, m, v in zip(values, grads, exp_avgs, exp_avg_sqs, strict=True):
                if wd > 0.0:
                    w.mul_(1.0 - lr * wd)
                adam_reference(w, g, m, v, step, lr, beta1, beta2, eps, 0.0)
