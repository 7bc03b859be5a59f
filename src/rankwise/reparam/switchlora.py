"""SwitchLoRA: LoRA whose vectors are swapped with stored candidates on a decaying schedule.

"SwitchLoRA: Switched Low-Rank Adaptation Can Learn Full-Rank Information" (Zhou et al., arXiv 2406.06564).
W = W0 + s·B·A (LoRA via ``rankwise.adapt``) plus, per layer, C candidate columns for B (m, C) and C
candidate rows for A (C, n). After each step every vector of B (column i) and of A (row i) switches
independently with probability p(t) = 3^(−t / T_d) / interval₀ (``switch_every`` = interval₀,
``switch_decay_steps`` = T_d: the frequency falls to a third at T_d). Switching B[:, i] to candidate c:

    W0 ← W0 − s·(c − B[:, i])·A[i, :],   B[:, i] ↔ c        (so W0 + s·B·A is unchanged)

and symmetrically for A[i, :]. The switched vector's optimizer state is zeroed; its counterpart
(A[i, :] for a B switch, B[:, i] for an A switch) has its state zeroed and is frozen (gradient zeroed)
for ``freeze_steps`` steps, as in the paper, so Adam restarts its moments cleanly.

Memory per m×n layer: frozen W0 (m·n) + candidates C·(m+n) (not trained) + trainable r·(m+n);
Adam state 2·r·(m+n). Candidates init: A rows Kaiming-uniform (±1/√n), B columns ±1/√r.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..schedule import TrainingSchedule
from .config import ReparamConfig
from .layers import kaiming_bound
from .lora_base import attach_lora
from .optim_state import zero_state_slices

ADAPTER = "switchlora"


class SwitchLoRASchedule(TrainingSchedule):
    """Random vector switches with function-preserving absorption into W0; counterpart freezing."""

    def __init__(self, pairs: list, config: ReparamConfig):
        self.pairs = pairs
        self.interval, self.decay, self.freeze = config.switch_every, config.switch_decay_steps, config.freeze_steps
        self.generator = torch.Generator().manual_seed(config.seed)
        self.cand_a: list[torch.Tensor] = []   # (C, n) per layer
        self.cand_b: list[torch.Tensor] = []   # (m, C)
        self.frozen_a: list[torch.Tensor] = []  # (r,) steps left
        self.frozen_b: list[torch.Tensor] = []
        for _, adapter in pairs:
            a, b = adapter.delta.lora_A, adapter.delta.lora_B
            r, n, m = a.shape[0], a.shape[1], b.shape[0]
            c = config.num_candidates or r
            ba, bb = kaiming_bound(n), 1.0 / math.sqrt(r)
            g = self.generator
            self.cand_a.append(torch.empty(c, n, dtype=a.dtype).uniform_(-ba, ba, generator=g).to(a.device))
            self.cand_b.append(torch.empty(m, c, dtype=b.dtype).uniform_(-bb, bb, generator=g).to(b.device))
            self.frozen_a.append(torch.zeros(r, dtype=torch.long))
            self.frozen_b.append(torch.zeros(r, dtype=torch.long))

    def probability(self, step: int) -> float:
        """p(t) = 3^(−t/T_d) / interval₀: each vector's chance to switch after step t."""
        return min(1.0, 3.0 ** (-step / self.decay) / self.interval)

    def _follow_devices(self) -> None:
        """Keep candidates and counters on their factors' device (the model may move after reparameterize)."""
        for i, (_, adapter) in enumerate(self.pairs):
            dev = adapter.delta.lora_A.device
            if self.cand_a[i].device != dev:
                for name in ("cand_a", "cand_b", "frozen_a", "frozen_b"):
                    getattr(self, name)[i] = getattr(self, name)[i].to(dev)

    def before_step(self, step: int) -> None:
        self._follow_devices()
        for (_, adapter), fa, fb in zip(self.pairs, self.frozen_a, self.frozen_b, strict=True):
            a, b = adapter.delta.lora_A, adapter.delta.lora_B
            if a.grad is not None and bool(fa.any()):
                a.grad[fa > 0] = 0
            if b.grad is not None and bool(fb.any()):
                b.grad[:, fb > 0] = 0

    @torch.no_grad()
    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self._follow_devices()
        p = self.probability(step)
        for i, (layer, adapter) in enumerate(self.pairs):
            self.frozen_a[i].sub_(1).clamp_(min=0)
            self.frozen_b[i].sub_(1).clamp_(min=0)
            delta = adapter.delta
            a, b, s, w = delta.lora_A, delta.lora_B, delta.scale, layer.weight
            r = a.shape[0]
            sw_b = (torch.rand(r, generator=self.generator) < p).nonzero().flatten().to(w.device)
            sw_a = (torch.rand(r, generator=self.generator) < p).nonzero().flatten().to(w.device)
            if len(sw_b):
                pick = torch.randint(self.cand_b[i].shape[1], (len(sw_b),), generator=self.generator)
                for col, j in zip(sw_b.tolist(), pick.tolist(), strict=True):
                    c = self.cand_b[i][:, j].clone()
                    w.sub_(s * torch.outer(c - b[:, col], a[col]).to(w.dtype))      # W0 absorbs the change
                    self.cand_b[i][:, j] = b[:, col]
                    b[:, col] = c
                zero_state_slices(optimizer, b, sw_b, 1)
                zero_state_slices(optimizer, a, sw_b, 0)
                self.frozen_a[i][sw_b] = self.freeze
            if len(sw_a):
                pick = torch.randint(self.cand_a[i].shape[0], (len(sw_a),), generator=self.generator)
                for row, j in zip(sw_a.tolist(), pick.tolist(), strict=True):
                    c = self.cand_a[i][j].clone()
                    w.sub_(s * torch.outer(b[:, row], c - a[row]).to(w.dtype))
                    self.cand_a[i][j] = a[row]
                    a[row] = c
                zero_state_slices(optimizer, a, sw_a, 0)
                zero_state_slices(optimizer, b, sw_a, 1)
                self.frozen_b[i][sw_a] = self.freeze

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "cand_a": [t.clone() for t in self.cand_a],
                "cand_b": [t.clone() for t in self.cand_b], "frozen_a": [t.clone() for t in self.frozen_a],
                "frozen_b": [t.clone() for t in self.frozen_b]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        for name in ("cand_a", "cand_b", "frozen_a", "frozen_b"):
            for dst, src in zip(getattr(self, name), state[name], strict=True):
                dst.copy_(src.to(dst.device))


def apply_switchlora(model: nn.Module, config: ReparamConfig) -> SwitchLoRASchedule:
    """Attach the LoRA adapter and return the switching schedule."""
    return SwitchLoRASchedule(attach_lora(model, config, ADAPTER), config)
