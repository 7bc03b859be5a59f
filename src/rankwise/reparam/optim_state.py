"""Editing an optimizer's per-parameter state at restarts, switches and refactorisations.

Works with any optimizer that keeps per-parameter tensors shaped like the parameter (Adam's
``exp_avg`` / ``exp_avg_sq``, SGD's ``momentum_buffer``); scalar entries such as Adam's ``step`` are
left alone, as ReLoRA's reference does (so bias correction does not re-inflate the first updates).
"""

from __future__ import annotations

import torch


def moment_tensors(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    """The state tensors of ``param`` that have its shape (empty before the first step)."""
    state = optimizer.state.get(param, {})
    return [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == param.shape]


@torch.no_grad()
def reset_state(optimizer: torch.optim.Optimizer, params) -> None:
    """Zero every moment of ``params``."""
    for p in params:
        for t in moment_tensors(optimizer, p):
            t.zero_()


@torch.no_grad()
def prune_state(optimizer: torch.optim.Optimizer, params, mode: str, fraction: float,
                generator: torch.Generator) -> None:
    """ReLoRA's optimizer-state pruning: zero a ``fraction`` of each parameter's state entries.

    ``mode="random"`` zeroes a uniformly random subset; ``"magnitude"`` zeroes the entries with the smallest
    second moment (``exp_avg_sq``; the summed magnitudes of the moments for other optimizers); ``"reset"``
    zeroes everything. One mask per parameter prunes the same entries of every moment: pruning Adam's
    first and second moments independently would leave entries with m ≠ 0 and v = 0, whose next update
    m/(√v + ε) explodes.
    """
    for p in params:
        tensors = moment_tensors(optimizer, p)
        if not tensors:
            continue
        if mode == "reset" or fraction >= 1.0:
            keep = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
        elif mode == "random":
            keep = (torch.rand(p.shape, generator=generator) >= fraction).to(p.device)
        elif mode == "magnitude":
            state = optimizer.state[p]
            score = state["exp_avg_sq"] if "exp_avg_sq" in state else sum(t.abs() for t in tensors)
            k = int(fraction * score.numel())
            keep = torch.ones(p.shape, dtype=torch.bool, device=p.device)
            if k > 0:
                keep = score > score.flatten().kthvalue(k).values
        else:
            raise ValueError(f"unknown prune mode {mode!r}")
        for t in tensors:
            t.mul_(keep.to(t.dtype))


@torch.no_grad()
def zero_state_slices(optimizer: torch.optim.Optimizer, param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """Zero the moments of ``param`` along ``dim`` at ``index`` (rows of A, columns of B, …)."""
    for t in moment_tensors(optimizer, param):
        t.index_fill_(dim, index.to(t.device), 0)
