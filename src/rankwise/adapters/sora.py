"""SoRA: LoRA with a sparse gate between the factors, driven to zero by a proximal L1 step.

"Sparse Low-rank Adaptation of Pre-trained Language Models", Ding et al., arXiv 2311.11696
(reference code: TsinghuaC3I/SoRA).

    ΔW = s · B · diag(g) · A,      g ∈ ℝʳ, init g = 1

After each optimizer step the gate takes the proximal step of λ‖g‖₁ with the gate's learning
rate η (:class:`SoRASchedule`):

    g ← sign(g) · max(|g| − η·λ, 0)

so gates hit exactly zero and their rank-1 components stop contributing. :func:`prune_gates` then
drops those components (and folds nothing: ΔW is unchanged), so the saved adapter has the smaller
rank. ``lora_export`` writes ΔW as plain LoRA factors (B·diag(g), A), which is how the PEFT format
holds a SoRA adapter. Trainable parameters per m×n layer: r·(m + n) + r.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from ..schedule import TrainingSchedule
from .lora import LoRA

SORA_OPTIONS: dict[str, object] = {"sora_lambda": 1e-3}


class SoRA(LoRA):
    """ΔW = s·B·diag(g)·A with trainable ``lora_A`` (r, n), ``lora_B`` (m, r) and ``gate`` (r,)."""

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__(geometry, rank, scale, dtype, device)
        self.gate = nn.Parameter(torch.ones(rank, dtype=dtype, device=device))

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point() and x.dtype != self.lora_A.dtype:
            x = x.to(self.lora_A.dtype)
        h = self.geometry.first(base, x, self.lora_A)                      # (..., r) or (N, r, H, W)
        h = h * (self.gate.view(1, -1, 1, 1) if self.geometry.kind == "conv2d" else self.gate)
        return self.geometry.second_add(out, h, self.lora_B, self.scale)

    def fused_forward(self, base, x, magnitude=None):
        return None  # the gate sits between the factors: plain path

    def delta_matrix(self) -> torch.Tensor:
        return self.scale * ((self.lora_B * self.gate) @ self.lora_A)

    def row_norms_with(self, w0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.linalg.vector_norm(w0 + self.delta_matrix().to(w0.dtype), dim=1)

    def lora_export(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Plain-LoRA factors of the same ΔW: (A (r, n), B·diag(g) (m, r), s)."""
        return self.lora_A.detach(), (self.lora_B * self.gate).detach(), self.scale

    @torch.no_grad()
    def prune(self, scale_for: Callable[[int], float] | None = None) -> int:
        """Drop the components whose gate is exactly 0, keeping ΔW; returns the new rank (≥ 1).

        ``scale_for(rank)`` is the config's scale at the new rank (α/r' or α/√r'); B is rescaled by
        s/s' so that ΔW is unchanged and a saved file (which records α, not s) loads back exactly.
        """
        keep = (self.gate != 0).nonzero().view(-1)
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long, device=self.gate.device)  # a zero ΔW of rank 1
        if keep.numel() == self.rank:
            return self.rank
        new_rank = int(keep.numel())
        new_scale = scale_for(new_rank) if scale_for is not None else self.scale
        grad = self.gate.requires_grad
        self.lora_A = nn.Parameter(self.lora_A[keep].clone(), requires_grad=grad)
        self.lora_B = nn.Parameter(self.lora_B[:, keep] * (self.scale / new_scale), requires_grad=grad)
        self.gate = nn.Parameter(self.gate[keep].clone(), requires_grad=grad)
        self.rank, self.scale = new_rank, new_scale
        return self.rank


def sora_deltas(model: nn.Module, name: str | None = None) -> list[tuple[str, SoRA, Any]]:
    """(layer, SoRA parameterisation, config) of adapter ``name`` (default: every active adapter)."""
    from ..core.api import hosts

    out = []
    for layer, _, host in hosts(model):
        for n, adapter in host.items():
            if (name is None and n in host.active or n == name) and isinstance(adapter.delta, SoRA):
                out.append((layer, adapter.delta, host.config[n]))
    return out


def prune_gates(model: nn.Module, name: str | None = None) -> dict[str, int]:
    """Remove zero-gated components of every SoRA adapter; returns {layer: new rank}.

    Call it after training and before ``save_adapter`` so the file holds only the surviving rank;
    the parameters are new tensors, so build a new optimizer if training continues.
    """
    return {layer: d.prune(lambda r, c=cfg, n=layer: c.scale(r, c.alpha_for(n))) for layer, d, cfg in
            sora_deltas(model, name)}


class SoRASchedule(TrainingSchedule):
    """The proximal L1 step on every SoRA gate, after each optimizer step.

    The step size is the learning rate of the gate's parameter group (times ``lr_factor``, as the
    optimizer used it), so λ has the paper's meaning.
    """

    def __init__(self, model: nn.Module, config: Any, total_steps: int = 0, name: str | None = None):
        self.deltas = [d for _, d, _ in sora_deltas(model, name)]
        self.lam = float(config.option("sora_lambda"))

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        with torch.no_grad():
            for d in self.deltas:
                lr = lr_of.get(id(d.gate))
                if lr is None:
                    continue
                g = d.gate
                g.copy_(torch.sign(g) * (g.abs() - lr * self.lam).clamp_min(0))
