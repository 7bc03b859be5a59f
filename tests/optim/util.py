"""Shared pieces of the optimizer tests: a tiny MLP with both projection sides, seeded batches, a loop."""

from __future__ import annotations

import torch
from torch import nn


def mlp(seed: int = 0) -> nn.Sequential:
    """fc0: 24×16 (m ≥ n, right side), fc2: 10×24 (m < n, left side), plus biases (plain Adam)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 24), nn.Tanh(), nn.Linear(24, 10))


def groups(model: nn.Sequential, **low) -> list[dict]:
    mats = [model[0].weight, model[2].weight]
    ids = {id(p) for p in mats}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]}, {"params": mats, **low}]


def batch(step: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, 16, generator=g), torch.randn(n, 10, generator=g)


def loss_of(model: nn.Module, step: int) -> torch.Tensor:
    x, y = batch(step)
    return ((model(x) - y) ** 2).mean()


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range, sched=None) -> None:
    for step in steps:
        opt.zero_grad()
        loss_of(model, step).backward()
        opt.step()
        if sched is not None:
            sched.step()


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]
