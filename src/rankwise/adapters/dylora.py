"""DyLoRA: LoRA trained on nested rank prefixes, usable at any rank b ≤ r after training.

"DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using Dynamic Search-Free Low-Rank
Adaptation", Valipour et al., arXiv 2210.07558 (EACL 2023).

    ΔW_b = (α/b) · B[:, :b] · A[:b, :],     b ~ Uniform{1, …, r} each training step

(the same b for every layer). :class:`DyLoRASchedule` draws b before each step from a seeded
generator (its state is the schedule's state, so a resumed run draws the same ranks). With option
``dylora_frozen=True`` only the b-th component gets a gradient (the paper's default "frozen"
update: lower components are not disturbed); otherwise every component ≤ b trains.

After training, :func:`set_rank` picks the rank used in evaluation, merging and saving
(default r); it is stored with the adapter (``rank_in_use``). The scale follows the rank, α/b
(α/√b with rsLoRA is not part of the method; the scale used is s_r·r/b).
Trainable parameters per m×n layer: r·(m + n).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from ..schedule import TrainingSchedule
from .lora import LoRA

DYLORA_OPTIONS: dict[str, object] = {"dylora_frozen": False, "dylora_seed": 0}


class DyLoRA(LoRA):
    """LoRA whose forward uses the first b components with scale s·r/b.

    ``train_rank`` (set by the schedule) is used in training mode, ``rank_in_use`` otherwise.
    """

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__(geometry, rank, scale, dtype, device)
        self.register_buffer("rank_in_use", torch.tensor(rank, dtype=torch.long, device=device))
        self.train_rank: int | None = None

    def current_rank(self) -> int:
        if self.training and self.train_rank is not None:
            return self.train_rank
        return int(self.rank_in_use)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(A[:b] (b, n), B[:, :b] (m, b), s·r/b) for the rank b now in use (views: gradients flow)."""
        b = self.current_rank()
        return self.lora_A[:b], self.lora_B[:, :b], self.scale * self.rank / b

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        a, b, s = self.factors()
        if x.is_floating_point() and x.dtype != a.dtype:
            x = x.to(a.dtype)
        h = self.geometry.first(base, x, a)
        return self.geometry.second_add(out, h, b, s)

    def fused_forward(self, base, x, magnitude=None):
        return None

    def delta_matrix(self) -> torch.Tensor:
        a, b, s = self.factors()
        return s * (b @ a)

    def row_norms_with(self, w0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.linalg.vector_norm(w0 + self.delta_matrix().to(w0.dtype), dim=1)

    def lora_export(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Plain-LoRA factors of ΔW at the rank in use: (A[:b], B[:, :b], α/b)."""
        a, b, s = self.factors()
        return a.detach(), b.detach(), s


def dylora_deltas(model: nn.Module, name: str | None = None) -> list[DyLoRA]:
    from ..core.api import hosts

    return [a.delta for _, _, h in hosts(model) for n, a in h.items()
            if (n == name or name is None and n in h.active) and isinstance(a.delta, DyLoRA)]


def set_rank(model: nn.Module, rank: int, name: str | None = None) -> None:
    """Use the first ``rank`` components of every DyLoRA adapter (``name``, default: the active ones).

    Raises:
        ConfigError: no DyLoRA adapter, or ``rank`` outside 1..r of some layer (checked before any change).
    """
    deltas = dylora_deltas(model, name)
    if not deltas:
        raise ConfigError("set_rank applies to DyLoRA adapters (method 'dylora'); the model has none active")
    if isinstance(rank, bool) or not isinstance(rank, int) or any(not 1 <= rank <= d.rank for d in deltas):
        raise ConfigError(f"rank must be an int in 1..{min(d.rank for d in deltas)}, got {rank!r}")
    for d in deltas:
        d.rank_in_use.fill_(rank)


class DyLoRASchedule(TrainingSchedule):
    """Draws the training rank b for the next step; optionally freezes components below b."""

    def __init__(self, model: nn.Module, config: Any, total_steps: int = 0, name: str | None = None):
        self.deltas = dylora_deltas(model, name)
        self.frozen = bool(config.option("dylora_frozen"))
        self.max_rank = min((d.rank for d in self.deltas), default=1)
        self.generator = torch.Generator().manual_seed(int(config.option("dylora_seed")))
        self.rank = 0
        self._draw()

    def _draw(self) -> None:
        self.rank = int(torch.randint(1, self.max_rank + 1, (1,), generator=self.generator))
        for d in self.deltas:
            d.train_rank = self.rank

    def before_step(self, step: int) -> None:
        if not self.frozen:
            return
        b = self.rank
        for d in self.deltas:  # only the b-th component moves
            if d.lora_A.grad is not None:
                d.lora_A.grad[: b - 1].zero_()
            if d.lora_B.grad is not None:
                d.lora_B.grad[:, : b - 1].zero_()

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self._draw()

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "rank": self.rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.rank = int(state["rank"])
        for d in self.deltas:
            d.train_rank = self.rank
