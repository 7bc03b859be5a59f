"""An optimizer that runs a gradient rule around every step: ``optim.LoRAPro(optimizer, model)``.

    opt = rankwise.optim.LoRAPro(torch.optim.AdamW(params, lr=1e-4), model)
    loss.backward(); opt.step(); opt.zero_grad()

is the same as calling the rule's ``before_step`` / ``after_step`` around ``optimizer.step()``
in a loop (see ``rankwise.schedule``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schedule import TrainingSchedule


class ScheduledOptimizer:
    """Wraps ``optimizer``; ``step()`` = rule.before_step, optimizer.step, rule.after_step."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: TrainingSchedule):
        self.optimizer = optimizer
        self.schedule = schedule
        self.steps = 0

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:  # the closure computes the gradients the rule must see first
            with torch.enable_grad():
                loss = closure()
        self.schedule.before_step(self.steps)
        self.optimizer.step()
        self.schedule.after_step(self.steps, self.optimizer)
        self.steps += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.steps = int(state["steps"])


def LoRAPro(optimizer: torch.optim.Optimizer, model: nn.Module, ridge: float = 1e-8) -> ScheduledOptimizer:  # noqa: N802
    """``optimizer`` with LoRA-Pro's gradient adjustment (see ``rankwise.optim.lora_pro``)."""
    from .lora_pro import LoRAProRule

    rule = LoRAProRule(model)
    rule.ridge = ridge
    return ScheduledOptimizer(optimizer, rule)


def AltLoRA(optimizer: torch.optim.Optimizer, model: nn.Module, ridge: float = 1e-5) -> ScheduledOptimizer:  # noqa: N802
    """``optimizer`` with AltLoRA's alternating projected updates (see ``rankwise.optim.altlora``)."""
    from .altlora import AltLoRARule

    rule = AltLoRARule(model)
    rule.ridge = ridge
    return ScheduledOptimizer(optimizer, rule)


def ALLoRA(optimizer: torch.optim.Optimizer, model: nn.Module, eta: float = 1.0) -> ScheduledOptimizer:  # noqa: N802
    """``optimizer`` with ALLoRA's norm-scaled gradients (see ``rankwise.optim.allora``)."""
    from .allora import ALLoRARule

    rule = ALLoRARule(model)
    rule.eta = eta
    return ScheduledOptimizer(optimizer, rule)
