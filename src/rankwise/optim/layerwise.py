"""Layer-wise updates: step each parameter from its post-accumulate-grad hook and free its gradient at once.

In standard mode every parameter's full gradient lives until ``optimizer.step()``, so peak memory holds
all of them at once. In layer-wise mode (GaLore, arXiv 2403.03507, §4.3) the optimizer registers a
``Tensor.register_post_accumulate_grad_hook`` on each parameter: as soon as backward has produced that
parameter's gradient, the hook runs the update and sets ``p.grad = None``, so at most a few full
gradients coexist.

Contract with the training loop (unlike galore-torch's one-optimizer-per-parameter recipe, the loop is
unchanged): ``loss.backward()`` performs the updates; ``optimizer.step()`` and ``zero_grad()`` are still
called once per step and only do bookkeeping, so an LR scheduler wrapped around the optimizer advances
once per optimizer step, and the hooks read the group's current ``lr``.

Refused: gradient accumulation (a second backward before ``optimizer.step()`` raises ConfigError,
because the first backward has already applied its update) and gradient clipping by global norm (no
global norm exists when gradients are consumed one by one).

Distributed: do not wrap the model in DDP in this mode. When ``torch.distributed`` is initialised with
more than one process, each hook all-reduces (averages) its gradient before projecting it, so the
projections see the global gradient and every rank applies the same update.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from ..errors import ConfigError


def world_size() -> int:
    """Number of processes in the default group (1 when torch.distributed is not in use)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class LayerwiseHooks:
    """The hooks of one optimizer in layer-wise mode.

    Args:
        optimizer: an optimizer with a ``_step_one(param, grad, group)`` method (rankwise's low-rank optimizers).
        sync: average gradients across processes in the hook: ``"auto"`` (when torch.distributed runs with
            more than one process), True or False.
    """

    def __init__(self, optimizer, sync: bool | str = "auto"):
        self.optimizer = optimizer
        self.sync = sync
        self.stepped: set[int] = set()
        self.handles = []
        for gi, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if p.requires_grad:
                    self.handles.append(p.register_post_accumulate_grad_hook(partial(self._hook, gi)))

    def _hook(self, group_index: int, p: Tensor) -> None:
        if id(p) in self.stepped:
            raise ConfigError("layer-wise mode updates each parameter during backward, and this parameter was "
                              "already updated since the last optimizer.step(): gradient accumulation (several "
                              "backward passes per optimizer step) is not supported in layer-wise mode. Call "
                              "optimizer.step() after every backward, or use layerwise=False to accumulate.")
        grad = p.grad
        if grad is None:
            return
        with torch.no_grad():
            n = world_size()
            if n > 1 and self.sync in ("auto", True):
                torch.distributed.all_reduce(grad)  # sum over ranks, then mean: what DDP would have done
                grad.div_(n)
            self.optimizer._step_one(p, grad, self.optimizer.param_groups[group_index])
        p.grad = None
        self.stepped.add(id(p))

    def tick(self) -> None:
        """End of an optimizer step (called by ``optimizer.step()``)."""
        self.stepped.clear()

    def remove(self) -> None:
        """Unregister every hook (the optimizer then behaves as in standard mode)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
