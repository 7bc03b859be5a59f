"""SST: sparse spectral training, W = U·diag(Σ)·Vᵀ with sampled singular-vector updates.

"Sparse Spectral Training and Inference on Euclidean and Hyperbolic Neural Networks" (Zhao et al.,
arXiv 2405.15481). Each layer holds the full spectral form of its dense init, W0 = U·diag(Σ)·Vᵀ with
U (m, k), Σ (k,), V (n, k), k = min(m, n), so the function starts unchanged. Every step all of Σ is
trained; of U and V only the columns of r sampled pairs, drawn every ``sample_every`` steps by
multinomial sampling without replacement with probability ∝ Σ. Every ``restart_every`` steps the
layer is re-SVD'd (U·diag(Σ)·Vᵀ is re-factored exactly, restoring orthonormal U, V) and the factors'
optimizer state reset.

Forward y = U·(Σ ⊙ (Vᵀ·x)) + b: O(T·k·(m+n)). Trainable per step r·(m+n) + k values; this
implementation keeps Adam moments for all of U and V (full-size tensors; unsampled columns have zero
gradient and zeroed moments, so they do not move as long as weight decay on them is 0), so its state
is 2·k·(m+n+1), not the paper's sampled-only state.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..schedule import TrainingSchedule
from .config import ReparamConfig
from .layers import FactoredLinear, replace_linears
from .optim_state import reset_state, zero_state_slices


class SpectralLinear(FactoredLinear):
    """y = U·(Σ ⊙ (Vᵀ·x)) + b; buffer ``active`` (k,) marks the sampled pairs whose U, V columns train."""

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None = None, dtype=None,
                 device=None):
        super().__init__(in_features, out_features, bias)
        k = min(in_features, out_features)
        self.U = nn.Parameter(torch.zeros(out_features, k, dtype=dtype, device=device))
        self.sigma = nn.Parameter(torch.zeros(k, dtype=dtype, device=device))
        self.V = nn.Parameter(torch.zeros(in_features, k, dtype=dtype, device=device))
        self.register_buffer("active", torch.zeros(k, dtype=torch.bool, device=device))

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> SpectralLinear:
        new = cls(layer.in_features, layer.out_features, layer.bias, layer.weight.dtype, layer.weight.device)
        new.set_from_dense(layer.weight.detach())
        return new

    @torch.no_grad()
    def set_from_dense(self, w: torch.Tensor) -> None:
        """U, Σ, V from the SVD of ``w`` (m, n), computed in fp32/fp64."""
        acc = torch.float64 if w.dtype == torch.float64 else torch.float32
        u, s, vh = torch.linalg.svd(w.to(acc), full_matrices=False)
        self.U.copy_(u)
        self.sigma.copy_(s)
        self.V.copy_(vh.t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.V.t()) * self.sigma                      # (..., k)
        return F.linear(h, self.U, self.bias)                         # (..., m)

    def dense_weight(self) -> torch.Tensor:
        return (self.U * self.sigma) @ self.V.t()

    @torch.no_grad()
    def resample(self, rank: int, generator: torch.Generator) -> None:
        """Draw ``rank`` pairs without replacement with probability ∝ Σ (|Σ|, floored to stay positive)."""
        p = self.sigma.detach().abs().float().cpu()
        p = p + 1e-12 * p.max().clamp_min(1e-30)
        idx = torch.multinomial(p, min(rank, p.numel()), replacement=False, generator=generator)
        self.active.zero_()
        self.active[idx.to(self.active.device)] = True


class SSTSchedule(TrainingSchedule):
    """Masks U, V gradients to the sampled pairs; resamples every ``sample_every``; re-SVDs every ``restart_every``."""

    def __init__(self, layers: list[SpectralLinear], config: ReparamConfig):
        self.layers, self.rank = layers, config.rank
        self.sample_every, self.svd_every = config.sample_every, config.restart_every
        self.generator = torch.Generator().manual_seed(config.seed)
        for layer in layers:
            layer.resample(self.rank, self.generator)

    def before_step(self, step: int) -> None:
        for layer in self.layers:
            mask = layer.active.to(layer.U.dtype)
            for p in (layer.U, layer.V):
                if p.grad is not None:
                    p.grad.mul_(mask)                                 # columns of unsampled pairs stay fixed

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        done = step + 1
        if done % self.svd_every == 0:
            for layer in self.layers:
                layer.set_from_dense(layer.dense_weight().detach())
                reset_state(optimizer, [layer.U, layer.sigma, layer.V])
        if done % self.sample_every == 0 or done % self.svd_every == 0:
            for layer in self.layers:
                layer.resample(self.rank, self.generator)
                off = (~layer.active).nonzero().flatten()
                zero_state_slices(optimizer, layer.U, off, 1)
                zero_state_slices(optimizer, layer.V, off, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def apply_sst(model: nn.Module, config: ReparamConfig) -> SSTSchedule:
    """Replace the selected linears by :class:`SpectralLinear`; return the sampling / re-SVD schedule."""
    names = replace_linears(model, config, lambda i, name, layer: SpectralLinear.from_linear(layer))
    return SSTSchedule([model.get_submodule(n) for n in names], config)
