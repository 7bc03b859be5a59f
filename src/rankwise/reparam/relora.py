"""ReLoRA: LoRA with periodic merges and restarts, giving a high-rank total update from low-rank steps.

"ReLoRA: High-Rank Training Through Low-Rank Updates" (Lialin et al., arXiv 2307.05695). The model is
W = W0 + s·B·A (LoRA through ``rankwise.adapt``; W0 may be a full-rank warm start: train the dense
model first, then call ``reparameterize``). Every K = ``restart_every`` steps:

    W0 ← W0 + s·B·A          (merge, fp32 arithmetic)
    A ~ Kaiming-uniform, B ← 0   (so s·B·A = 0 and the function is unchanged)
    prune the optimizer state of A and B (``prune``: magnitude / random fraction, or reset)

and the learning rate re-warms linearly over ``restart_warmup`` steps (``lr_factor``), which, times
the loop's own warmup-cosine schedule, gives ReLoRA's jagged cosine schedule. Unlike the reference
code, a restart never zeroes both factors (A is re-drawn), so the adapter trains right after it.

Memory per m×n layer: frozen W0 (m·n) + trainable r·(m+n); Adam state 2·r·(m+n).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schedule import TrainingSchedule
from .config import ReparamConfig
from .layers import kaiming_bound, layer_generator
from .lora_base import attach_lora
from .optim_state import prune_state

ADAPTER = "relora"


@torch.no_grad()
def merge_into_base(layer: nn.Module, adapter) -> None:
    """W0 ← W0 + s·B·A (the adapter core's merge arithmetic), adapter left in place."""
    w = layer.weight
    w.copy_(adapter.merged_weight(w).to(w.dtype))


class ReLoRASchedule(TrainingSchedule):
    """Merge, re-initialise and prune every ``restart_every`` steps; jagged LR via :meth:`lr_factor`."""

    def __init__(self, pairs: list, config: ReparamConfig):
        self.pairs = pairs
        self.every, self.warmup = config.restart_every, config.restart_warmup
        self.prune, self.fraction, self.seed = config.prune, config.prune_fraction, config.seed
        self.restarts = 0

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        if (step + 1) % self.every:
            return
        self.restarts = (step + 1) // self.every
        # every draw depends only on (seed, restart, layer): a resumed run repeats it exactly
        for i, (layer, adapter) in enumerate(self.pairs):
            delta = adapter.delta
            merge_into_base(layer, adapter)
            g = layer_generator(self.seed + 7919 * self.restarts, i)
            with torch.no_grad():
                bound = kaiming_bound(delta.lora_A.shape[1])
                a = torch.empty(delta.lora_A.shape, dtype=delta.lora_A.dtype).uniform_(-bound, bound, generator=g)
                delta.lora_A.copy_(a)
                delta.lora_B.zero_()
            prune_state(optimizer, [delta.lora_A, delta.lora_B], self.prune, self.fraction, g)

    def lr_factor(self, step: int) -> float:
        if step < self.every or self.warmup == 0:
            return 1.0
        return min(1.0, (step % self.every + 1) / self.warmup)

    def state_dict(self) -> dict[str, Any]:
        return {"restarts": self.restarts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restarts = int(state["restarts"])


def apply_relora(model: nn.Module, config: ReparamConfig) -> ReLoRASchedule:
    """Attach the LoRA adapter and return the restart schedule."""
    return ReLoRASchedule(attach_lora(model, config, ADAPTER), config)
