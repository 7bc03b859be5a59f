"""apply(): replace each planned layer by a LowRankLinear holding the plan's factors; densify(): undo."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .lowrank_linear import LowRankLinear
from .plan import Plan
from .planner import matrix

ATTR = "rankwise_compression"  # model attribute: {"method", "allocation", "ratio", ...} of the applied plan


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, leaf = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), leaf


def apply(model: nn.Module, plan: Plan) -> nn.Module:
    """Swap every layer the plan gives a rank for a :class:`LowRankLinear` (in place; returns ``model``).

    Layers planned dense stay as they are. Everything is checked before the first change.

    Raises:
        ConfigError: a planned layer is missing, has another shape, or the plan carries no decompositions
            (e.g. it was rebuilt from JSON) — plan again on this model.
    """
    todo = []
    for lp in plan.layers:
        if lp.rank is None:
            continue
        try:
            module = model.get_submodule(lp.name)
        except AttributeError as e:
            raise ConfigError(f"the plan's layer {lp.name!r} is not in {type(model).__name__}; "
                              "plan on this model") from e
        if isinstance(module, LowRankLinear):
            raise ConfigError(f"{lp.name!r} is already compressed; densify the model first or plan again")
        if not hasattr(module, "weight") or tuple(matrix(module).shape) != tuple(lp.shape):
            raise ConfigError(f"{lp.name!r} does not have the planned shape {lp.shape}; plan on this model")
        if lp.spectrum is None:
            raise ConfigError(f"the plan has no decomposition for {lp.name!r}; run rankwise.compress.plan on the model")
        todo.append((lp, module))
    for lp, module in todo:
        b, a = lp.spectrum.factors(lp.rank)  # (m, k), (k, n)
        w = module.weight
        kind = "linear" if isinstance(module, nn.Linear) else "conv1d"
        new = LowRankLinear.from_factors(b.to(w.device), a.to(w.device), module.bias, kind=kind, dtype=w.dtype)
        new.train(module.training)
        parent, leaf = _parent(model, lp.name)
        setattr(parent, leaf, new)
    setattr(model, ATTR, {"method": plan.method, "allocation": plan.allocation, "ratio": plan.ratio,
                          "requested_ratio": plan.requested_ratio, "config": plan.config})
    return model


def compressed_layers(model: nn.Module) -> dict[str, LowRankLinear]:
    """Name → LowRankLinear of every factorised layer."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


@torch.no_grad()
def dense_layer(layer: LowRankLinear) -> nn.Module:
    """The dense equivalent of one LowRankLinear: nn.Linear, or HF Conv1D when it replaced one."""
    w = layer.dense_weight()  # (m, n)
    bias = layer.up.bias
    if layer.kind == "conv1d":
        from transformers.pytorch_utils import Conv1D

        out = Conv1D(layer.out_features, layer.in_features).to(device=w.device, dtype=w.dtype)
        out.weight.copy_(w.T)
        if bias is not None:
            out.bias.copy_(bias)
        else:
            out.bias.zero_()
        return out
    out = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None, device=w.device, dtype=w.dtype)
    out.weight.copy_(w)
    if bias is not None:
        out.bias.copy_(bias)
    return out


def densify(model: nn.Module) -> nn.Module:
    """Merge every LowRankLinear back into a dense layer W = B·A (in place; returns ``model``)."""
    for name, layer in compressed_layers(model).items():
        parent, leaf = _parent(model, name)
        new = dense_layer(layer)
        new.train(layer.training)
        setattr(parent, leaf, new)
    if hasattr(model, ATTR):
        delattr(model, ATTR)
    return model
