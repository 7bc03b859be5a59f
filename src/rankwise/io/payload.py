"""The format-independent middle of loading: a parsed adapter, validated, then applied.

Readers (``native``, ``peft_format``) turn files into a ``Payload``; ``apply_payload`` builds the
adapters off-model, loads and checks every tensor, and only then attaches them, so a bad file
leaves the model untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import LoRAConfig
from ..core import api
from ..core.saved_modules import check_saved_tensors
from ..errors import AdapterFileError, ConfigError, TargetError


@dataclass
class Payload:
    """A parsed adapter.

    Attributes:
        config: the adapter's config.
        layers: ``{layer name: {"rank": r, "alpha": a}}``.
        tensors: ``{layer name: {adapter state-dict key: tensor}}`` (keys like ``delta.lora_A``).
        base_tensors: ``{layer name: weight}`` to copy into base layers (PEFT's resized embeddings).
        weight_shapes: ``{layer name: stored weight shape}`` recorded at save time, if known.
        regenerated: ``{layer name: {state key: shape}}`` of seeded tensors rebuilt (not stored) at load.
        check_shared: ``{buffer name: tensor}``: shared bases a file carries (PEFT's VeRA/RandLoRA); each
            layer's regenerated buffer must equal the leading slice of the file's tensor.
        module_tensors: ``{parameter name: tensor}`` of whole modules trained with the adapter
            (``LoRAConfig.modules_to_save``), copied into the model.
        source: the file the tensors came from, for error messages.
    """

    config: LoRAConfig
    layers: dict[str, dict]
    tensors: dict[str, dict[str, torch.Tensor]]
    source: Path
    base_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    weight_shapes: dict[str, tuple] = field(default_factory=dict)
    regenerated: dict[str, dict[str, tuple]] = field(default_factory=dict)
    check_shared: dict[str, torch.Tensor] = field(default_factory=dict)
    module_tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def apply_payload(model: nn.Module, payload: Payload, name: str, activate: bool = True) -> nn.Module:
    """Check every tensor of ``payload`` against ``model``, then attach it as adapter ``name``."""
    src = payload.source
    modules = dict(model.named_modules())
    for layer, shape in payload.weight_shapes.items():
        weight = getattr(modules.get(layer), "weight", None)
        if weight is not None and tuple(weight.shape) != tuple(shape):
            raise AdapterFileError(f"{src}: layer {layer!r} was saved for a weight of shape {tuple(shape)}, but the "
                                   f"model's is {tuple(modules[layer].weight.shape)}; load it into the model it was "
                                   "trained on")
    for layer, w in payload.base_tensors.items():
        if layer not in modules or tuple(modules[layer].weight.shape) != tuple(w.shape):
            raise AdapterFileError(f"{src}: base weight for layer {layer!r} has shape {tuple(w.shape)}, which does not "
                                   "match the model")
    module_copies = check_saved_tensors(model, payload.module_tensors, src)
    try:
        plans = api.build(model, payload.config, name, layers=payload.layers)
    except (TargetError, ConfigError) as e:
        raise AdapterFileError(f"{src} does not fit this model: {e}") from e
    for p in plans:
        saved = payload.tensors[p.name]
        if any(k.endswith("_init") for k in saved):
            p.adapter.delta.remember_initial()
            p.moves_base = True
        rebuilt = p.adapter.regenerated_shapes()
        recorded = payload.regenerated.get(p.name, {})
        if recorded and {k: tuple(v) for k, v in recorded.items()} != rebuilt:
            raise AdapterFileError(f"{src}: layer {p.name!r} regenerates seeded tensors {rebuilt} but the file "
                                   f"recorded {recorded}; it was saved for other layers or another rankwise")
        for key, full in payload.check_shared.items():
            mine = getattr(p.adapter.delta, key)
            theirs = full[tuple(slice(0, s) for s in mine.shape)]
            if tuple(theirs.shape) != tuple(mine.shape) or not torch.allclose(theirs.to(mine), mine, atol=1e-6):
                raise AdapterFileError(f"{src}: the file's {key} differs from the bases regenerated from its seed for "
                                       f"layer {p.name!r}; it was written by an incompatible library version")
        expected = p.adapter.state_dict()
        missing = sorted(set(expected) - set(saved))
        extra = sorted(set(saved) - set(expected))
        if missing or extra:
            raise AdapterFileError(f"{src}: layer {p.name!r} is missing tensors {missing} / has unexpected tensors "
                                   f"{extra}; the file is incomplete or was written for another adapter type")
        for k, t in saved.items():
            if tuple(t.shape) != tuple(expected[k].shape):
                raise AdapterFileError(f"{src}: tensor {k!r} of layer {p.name!r} has shape {tuple(t.shape)}, expected "
                                       f"{tuple(expected[k].shape)} for this model")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise AdapterFileError(f"{src}: tensor {k!r} of layer {p.name!r} contains NaN or inf")
        p.adapter.load_state_dict({k: t.to(expected[k].dtype) for k, t in saved.items()})
    # everything checked: now change the model
    with torch.no_grad():
        for layer, w in payload.base_tensors.items():
            modules[layer].weight.copy_(w.to(modules[layer].weight.dtype))
        for param, t in module_copies:
            param.copy_(t.to(param.dtype))
    api.attach(model, plans, name, payload.config, activate)
    return model
