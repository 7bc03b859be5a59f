"""CoLA: a low-rank activation path y = s·B·σ(A·x) + b replacing each linear projection.

"CoLA: Compute-Efficient Pre-Training of LLMs via Low-Rank Activation" (Liu et al., arXiv 2502.10940).
The non-linearity σ between the factors makes the layer a small bottleneck MLP, so it does not merge
into a dense W (``mergeable = False``). CoLA-M (``recompute=True``) stores only x and recomputes
σ(A·x) in backward (activation checkpointing of the rank-r path): same gradients, less activation
memory. Trainable r·(m+n); Adam state 2·r·(m+n). Init: balanced factors of the dense init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ReparamConfig
from .layers import layer_rank, replace_linears
from .low_rank import LowRankLinear

_ACT = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh, "identity": lambda h: h}


class CoLALinear(LowRankLinear):
    """y = s·B·σ(A·x) + b. ``recompute`` (CoLA-M) recomputes σ(A·x) in backward."""

    mergeable = False

    def __init__(self, *args, activation: str = "silu", recompute: bool = False, **kw):
        super().__init__(*args, **kw)
        self.activation, self.recompute = activation, recompute

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        return _ACT[self.activation](F.linear(x, self.A))  # (..., r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            h = checkpoint(self._hidden, x, use_reentrant=False)
        else:
            h = self._hidden(x)
        out = F.linear(h, self.B)
        if self.scale != 1.0:
            out = out * self.scale
        return out if self.bias is None else out + self.bias

    def dense_weight(self) -> torch.Tensor:
        raise NotImplementedError("CoLA's y = B·σ(A·x) has no dense weight (σ is not linear)")

    def factor_pairs(self):
        return []  # re-balancing B, A would change σ(A·x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, recompute={self.recompute}"


def apply_cola(model: nn.Module, config: ReparamConfig) -> list[str]:
    """Replace the selected linears by :class:`CoLALinear`."""
    def build(i, name, layer):
        r = layer_rank(config, layer)
        base = LowRankLinear.from_linear(layer, r, config.scale(r))
        new = CoLALinear(layer.in_features, layer.out_features, r, config.scale(r), layer.bias,
                         layer.weight.dtype, layer.weight.device, activation=config.activation,
                         recompute=config.recompute)
        new.load_state_dict(base.state_dict())
        return new

    return replace_linears(model, config, build)
