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
    """ReLoRA's optimizer-state pruning: zero a ``fraction`` of each moment tensor's entries.

    ``mode="random"`` zeroes a uniformly random subset; ``"magnitude"`` zeroes the entries of smallest
    magnitude; ``"reset"`` zeroes everything.
    """
    for p in params:
        for t in moment_tensors(optimizer, p):
            if mode == "reset" or fraction >= 1.0:
                t.zero_()
            elif mode == "random":
                keep = torch.rand(t.shape, generator=generator) >= fraction
                t.mul_(keep.to(t.device, t.dtype))
            elif mode == "magnitude":
                k = int(fraction * t.numel())
                if k > 0:
                    threshold = t.abs().flatten().kthvalue(k).values
                    t.masked_fill_(t.abs() <= threshold, 0)
            else:
                raise ValueError(f"unknown prune mode {mode!r}")


@torch.no_grad()
def zero_state_slices(optimizer: torch.optim.Optimizer, param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """Zero the moments of ``param`` along ``dim`` at ``index`` (rows of A, columns of B, …)."""
    for t in moment_tensors(optimizer, param):
        t.index_fill_(dim, index.to(t.device), 0)
