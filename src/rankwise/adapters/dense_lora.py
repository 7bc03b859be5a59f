"""DenseLoRA: a shared encoder/decoder per projection type and a small dense matrix per layer.

"DenseLoRA: Dense Low-Rank Adaptation of Large Language Models", Mu et al., arXiv 2505.23808.

    ΔW·x = s · g(D · M · g(E · x)),   g = GELU,   s = α/r

with an encoder E (r, n) and a decoder D (m, r) shared by every adapted layer of the same
projection type (the reference code keeps one pair for all q, one for all k, …; rankwise groups
layers by their last name component and shape, e.g. every ``…self_attn.q_proj``), and a dense
M (r, r) per layer. E, D and M are all trainable: r·(m + n) per group plus r² per layer. Init (the
reference's): E Kaiming-uniform, D = 0 (so ΔW·x = g(0) = 0 at start), M Kaiming-uniform.

The update is not linear in x (the GELUs), so it cannot be merged into W: ``rankwise.merge`` says so.
The shared E and D are the same ``nn.Parameter`` on every layer of the group (counted once by
``model.parameters()`` and by optimizers); the rankwise format stores them under each layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..errors import AdapterStateError, ConfigError


def shared_pair(ctx: BuildContext, geometry: LayerGeometry, rank: int, dtype, device) -> tuple[nn.Parameter, ...]:
    """The (E (r, n), D (m, r)) of this layer's group, created on first use (E Kaiming-uniform, D = 0)."""
    group = ctx.layer.rsplit(".", 1)[-1]
    m, n = geometry.out_features, geometry.in_features

    def make():
        e = nn.Parameter(torch.empty(rank, n, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(e, a=math.sqrt(5))
        return e, nn.Parameter(torch.zeros(m, rank, dtype=dtype, device=device))

    return ctx.shared(f"dense_lora/{group}/{m}x{n}/r{rank}/{dtype}/{device}", make)


class DenseLoRA(Parameterisation):
    """ΔW·x = s·GELU(D·M·GELU(E·x)); ``dense_E``, ``dense_D`` shared per group, ``dense_M`` (r, r) per layer."""

    supported_inits = ("default",)
    supports_dora = False
    mergeable = False

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, scale)
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"DenseLoRA adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer")
        self.dense_E, self.dense_D = shared_pair(ctx, geometry, rank, dtype, device)
        self.dense_M = nn.Parameter(torch.empty(rank, rank, dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.dense_M, a=math.sqrt(5))
        return False  # E, D were initialised once, when the group's pair was created

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dense_M.dtype:
            x = x.to(self.dense_M.dtype)
        h = F.gelu(x @ self.dense_E.t())                 # (..., r)
        y = F.gelu((h @ self.dense_M.t()) @ self.dense_D.t())  # (..., m)
        return out + (self.scale * y).to(out.dtype)

    def delta_matrix(self) -> torch.Tensor:
        raise AdapterStateError("DenseLoRA's update GELU(D·M·GELU(E·x)) is not linear in x, so it has no ΔW matrix "
                                "and cannot be merged")

    def extra_repr(self) -> str:
        return f"in={self.geometry.in_features}, out={self.geometry.out_features}, rank={self.rank}"
