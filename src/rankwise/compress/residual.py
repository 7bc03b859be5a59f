"""What compression removed, as matrices for spectral analysis (e.g. ``rankwise.analysis``)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .apply import compressed_layers
from .planner import matrix


@torch.no_grad()
def residuals(original: nn.Module, compressed: nn.Module) -> dict[str, torch.Tensor]:
    """Name → W − B·A, (m, n), for every factorised layer of ``compressed``, against ``original``'s weight.

    The singular values of a residual are the spectrum that compression dropped (for plain SVD exactly
    ``plan.layers[i].spectrum.sigma[rank:]``).
    """
    out = {}
    for name, layer in compressed_layers(compressed).items():
        try:
            w = matrix(original.get_submodule(name))
        except AttributeError as e:
            raise ConfigError(f"{name!r} is not a layer of the original model") from e
        out[name] = w.to(layer.up.weight.dtype) - layer.dense_weight()
    return out
