"""The contract between methods that act during training and any training loop.

Some methods do more than define parameters: AdaLoRA prunes ranks on a budget, LoRA-Pro rewrites
gradients, ReLoRA merges and restarts, GaLore-style refactorisations reset optimizer state. Each
such method hands the loop one :class:`TrainingSchedule`; the loop (rankwise's CLI, the user's own
loop, or a transformers callback) calls it at four fixed points of every optimizer step:

    schedule = method.schedule(model, config, total_steps)   # or rankwise.reparameterize(...)
    for step in range(total_steps):
        loss = model(batch) + schedule.loss_term()            # e.g. an orthogonality penalty
        loss.backward()
        schedule.before_step(step)                            # gradients ready: rescale/project them
        optimizer.step()
        schedule.after_step(step, optimizer)                  # prune, merge, restart, reset state
        optimizer.zero_grad()
        # LR multiplier for jagged schedules: base_lr · schedule.lr_factor(step)

Everything a schedule keeps between steps goes through ``state_dict()`` as plain tensors and
numbers, so a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch


class TrainingSchedule:
    """A method's per-step behaviour. Subclasses override only the points they use."""

    def loss_term(self) -> torch.Tensor | float:
        """Extra loss added to the task loss before ``backward`` (0.0 if none)."""
        return 0.0

    def before_step(self, step: int) -> None:
        """After ``backward`` and before ``optimizer.step()``: gradients are final here."""

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.step()``; may change parameters and the optimizer's state."""

    def lr_factor(self, step: int) -> float:
        """Multiplier on the loop's learning rate at ``step`` (1.0: no change)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain tensors and numbers only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


class ComposedSchedule(TrainingSchedule):
    """Several schedules run in order as one (e.g. a rank schedule plus a gradient rule)."""

    def __init__(self, schedules: list[TrainingSchedule]):
        self.schedules = list(schedules)

    def loss_term(self) -> torch.Tensor | float:
        return sum((s.loss_term() for s in self.schedules), 0.0)

    def before_step(self, step: int) -> None:
        for s in self.schedules:
            s.before_step(step)

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        for s in self.schedules:
            s.after_step(step, optimizer)

    def lr_factor(self, step: int) -> float:
        factor = 1.0
        for s in self.schedules:
            factor *= s.lr_factor(step)
        return factor

    def state_dict(self) -> dict[str, Any]:
        return {str(i): s.state_dict() for i, s in enumerate(self.schedules)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, s in enumerate(self.schedules):
            s.load_state_dict(state[str(i)])
