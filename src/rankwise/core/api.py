"""The model-level verbs: adapt, activate, disable, merge, unload, inspect.

Every verb checks all its inputs before it changes anything, so a failed call leaves the model
exactly as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..calibration.plan import calibrate
from ..config import LoRAConfig
from ..errors import AdapterStateError, ConfigError, TargetError
from ..init.registry import get_initialiser
from .context import BuildContext
from .contract import Adapter
from .geometry import LayerGeometry, acc_dtype
from .host import AdapterHost
from .registry import adapter_dtype, make_parameterisation, make_wrapper
from .saved_modules import check_disjoint, unfreeze
from .targeting import resolve_targets

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def check_adapter_name(name: str) -> None:
    """Adapter names become state-dict key parts: letters, digits, ``_`` and ``-`` only."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"adapter name {name!r} must match {_NAME.pattern} (no dots or spaces)")


def hosts(model: nn.Module) -> Iterator[tuple[str, nn.Module, AdapterHost]]:
    """(layer name, layer, host) for every adapted layer, in model order."""
    for name, module in model.named_modules():
        host = AdapterHost.of(module)
        if host is not None:
            yield name, module, host


def adapter_names(model: nn.Module) -> list[str]:
    """Every adapter name present on the model, in the order first seen."""
    seen: dict[str, None] = {}
    for _, _, host in hosts(model):
        seen.update(dict.fromkeys(host.keys()))
    return list(seen)


@dataclass
class _Plan:
    name: str
    module: nn.Module
    geometry: LayerGeometry
    rank: int
    alpha: float
    adapter: Adapter | None = None
    moves_base: bool = False
    config: LoRAConfig | None = None  # set when calibration re-planned ranks (EVA): the config to record


def adapt(model: nn.Module, config: LoRAConfig, name: str = "default", *, activate: bool = True,
          calibration: Iterable | None = None, loss_fn: Callable | None = None) -> nn.Module:
    """Add adapter ``name`` to the layers of ``model`` that ``config.targets`` selects. In place.

    On the first call the base model's parameters are frozen. The new adapter becomes the only
    active one (``activate=False`` adds it inactive, frozen).

    Args:
        model: any ``nn.Module``.
        config: a ``LoRAConfig``.
        name: adapter name (letters, digits, ``_``, ``-``); several adapters may coexist.
        activate: make this the active adapter.
        calibration: batches (a list, a DataLoader, …) for data-driven inits (LoRA-GA, EVA, CorDA, …),
            read once before anything is modified; other inits ignore it. Dict batches are passed
            as ``model(**batch)``, tuples as ``model(*batch)``, tensors as ``model(batch)``.
        loss_fn: ``loss_fn(output, batch) -> scalar`` for gradient-based inits when the model's output
            has no ``.loss``.

    Returns:
        The same model, adapted.

    Raises:
        ConfigError, TargetError, AdapterStateError: before anything is modified.
    """
    plans = build(model, config, name, calibration=calibration, loss_fn=loss_fn)
    attach(model, plans, name, config, activate)
    return model


def build(model: nn.Module, config: LoRAConfig, name: str, layers: dict[str, dict] | None = None,
          calibration: Iterable | None = None, loss_fn: Callable | None = None) -> list[_Plan]:
    """Plan and build adapter ``name`` for every selected layer without touching the model.

    Every check and every SVD runs here, so a failure leaves the model as it was. ``layers``
    (``{layer name: {"rank": r, "alpha": a}}``) replaces target resolution and skips the
    initialiser, for loading saved tensors.
    """
    if not isinstance(config, LoRAConfig):
        raise ConfigError(f"config must be a rankwise.LoRAConfig, got {type(config).__name__}")
    config.validate()
    check_adapter_name(name)
    plans = _plan(model, config, name, layers)
    if config.modules_to_save:
        check_disjoint(model, config.modules_to_save, [p.name for p in plans])
    init = get_initialiser(config.init)
    if init.moves_base and layers is None:
        owners = _weight_owners(model)
        for p in plans:
            tied = [o for o in owners.get(id(p.module.weight), []) if o != p.name]
            if tied:
                raise ConfigError(f"init={config.init!r} rewrites the weight of {p.name!r}, which is tied to {tied}; "
                                  "exclude that layer or use an init that leaves W0 alone (e.g. 'default')")
    stats = {}
    if layers is None:  # the calibration pass (data-driven inits only), before anything is modified
        plans, stats = calibrate(model, plans, config, init, calibration, loss_fn)
    ctx = BuildContext(config, name, {p.name: p.geometry for p in plans})  # shared bases, seeds
    for p in plans:
        w = p.module.weight
        dtype = adapter_dtype(w.dtype)
        ctx.layer = p.name
        delta = make_parameterisation(config.parameterisation, p.geometry, p.rank, config.scale(p.rank, p.alpha),
                                      dtype, w.device, ctx)
        w0 = p.geometry.matrix(w.detach()).to(acc_dtype(w.dtype))
        if layers is None:
            try:
                p.moves_base = init.fn(delta, w0, niter=config.init_niter, calibration=stats.pop(p.name, None),
                                       config=config)
            except torch.linalg.LinAlgError as e:
                raise ConfigError(f"init={config.init!r} failed on layer {p.name!r}: {e}") from e
            if p.moves_base:
                delta.remember_initial()
                w0 = w0 - delta.initial_delta_matrix().to(w0.dtype)
        wrapper = make_wrapper(config.dora, p.geometry, dtype, w.device, delta)
        if config.dora:
            wrapper.reset_magnitude(delta, w0)
        p.adapter = Adapter(delta, wrapper, config.dropout)
    return plans


def attach(model: nn.Module, plans: list[_Plan], name: str, config: LoRAConfig, activate: bool = True) -> None:
    """Put built adapters on their layers (freezing the base model on first use) and activate."""
    if next(hosts(model), None) is None:
        for param in model.parameters():
            param.requires_grad_(False)
    for p in plans:
        host = AdapterHost.attach(p.module, p.geometry)
        host[name] = p.adapter
        host.config[name] = p.config or config
        if p.moves_base:
            host.shift_base(p.module, name, -1.0)
        if not activate:
            p.adapter.requires_grad_(False)
    if activate:
        set_active(model, name)
        unfreeze(model, config.modules_to_save)  # whole modules trained with the adapter (a task head)


def _plan(model: nn.Module, config: LoRAConfig, name: str, layers: dict[str, dict] | None) -> list[_Plan]:
    if layers is None:
        matches = [(m.name, m.module, m.geometry) for m in resolve_targets(model, config.targets, config.exclude)]
        specs = {n: {"rank": config.rank_for(n), "alpha": config.alpha_for(n)} for n, _, _ in matches}
    else:
        modules = dict(model.named_modules())
        matches = []
        for n in layers:
            if n not in modules:
                raise TargetError(f"layer {n!r} does not exist in {type(model).__name__}")
            try:
                matches.append((n, modules[n], LayerGeometry.of(modules[n])))
            except TypeError as e:
                raise TargetError(f"layer {n!r}: {e}") from e
        specs = layers
    plans = []
    for n, module, geo in matches:
        rank, alpha = specs[n]["rank"], specs[n]["alpha"]
        if rank > geo.max_rank and layers is None:  # saved adapters may exceed it (PEFT's rank-2r conversions)
            raise ConfigError(f"rank {rank} is too large for layer {n!r} ({geo.kind}, out={geo.out_features}, "
                              f"in={geo.in_features}); use rank ≤ {geo.max_rank} (rank_pattern can set it per layer)")
        if not module.weight.is_floating_point():
            raise ConfigError(f"layer {n!r} has a {module.weight.dtype} weight; rankwise adapts floating-point "
                              "weights (dequantize it first)")
        host = AdapterHost.of(module)
        if host is not None and name in host:
            raise AdapterStateError(f"layer {n!r} already has an adapter named {name!r}; pass another name= "
                                    "or remove it with rankwise.delete_adapter")
        plans.append(_Plan(n, module, geo, rank, alpha))
    return plans


def adapter_config(model: nn.Module, name: str = "default") -> LoRAConfig:
    """The config adapter ``name`` was created with."""
    for _, _, host in hosts(model):
        if name in host:
            return host.config[name]
    raise AdapterStateError(f"no adapter named {name!r}; the model has {adapter_names(model)}")


def _check_names(model: nn.Module, names: str | Iterable[str], found: list | None = None) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    found = list(hosts(model)) if found is None else found
    present = list(dict.fromkeys(a for _, _, h in found for a in h.keys()))
    if not present:
        raise AdapterStateError("the model has no rankwise adapters; call rankwise.adapt first")
    for n in names:
        if n not in present:
            raise AdapterStateError(f"no adapter named {n!r}; the model has {present}")
    return names


def set_active(model: nn.Module, names: str | Iterable[str]) -> None:
    """Make ``names`` the active adapters (applied in forward, trainable); all others inactive and frozen."""
    found = list(hosts(model))
    names = _check_names(model, names, found)
    for _, _, host in found:
        host.active = [n for n in names if n in host]
        for n, adapter in host.items():
            adapter.requires_grad_(n in host.active)


def active_adapters(model: nn.Module) -> list[str]:
    """Names of the active adapters, in the order first seen."""
    seen: dict[str, None] = {}
    for _, _, host in hosts(model):
        seen.update(dict.fromkeys(host.active))
    return list(seen)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that requires grad: the active adapters' (plus any the user unfroze)."""
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the original base model inside the block: adapters off, merged ones taken out.

    Unlike PEFT's ``disable_adapter``, this also undoes the base-weight shift of inits such as
    PiSSA (the hosts add ΔW₀·x back, factored, instead of touching W0), so the block really sees
    the base model.
    """
    merged = {n: list(h.merged) for n, _, h in hosts(model)}
    unmerge(model)
    for _, _, host in hosts(model):
        host.enabled = False
    try:
        yield model
    finally:
        for name, module, host in hosts(model):
            host.enabled = True
            for a in merged.get(name, []):
                host.merge(module, a)


def merge(model: nn.Module, names: str | Iterable[str] | None = None) -> None:
    """Fold adapters (default: the active ones) into the base weights; forward is unchanged.

    Raises:
        AdapterStateError: an adapter is already merged into some layer, or a target weight is tied to
            another layer (GPT-2's embedding and head); checked before any change.
    """
    names = active_adapters(model) if names is None else _check_names(model, names)
    todo = [(ln, m, h, n) for ln, m, h in hosts(model) for n in names if n in h]
    _check_mergeable(model, todo)
    for _, m, h, n in todo:
        h.merge(m, n)


def _weight_owners(model: nn.Module) -> dict[int, list[str]]:
    """id(parameter) -> names of every module holding it (more than one for tied weights)."""
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname.rsplit(".", 1)[0])
    return owners


def _check_mergeable(model: nn.Module, todo: list) -> None:
    """Refuse (before any change) merges that would double-add or write into a weight tied elsewhere."""
    owners = _weight_owners(model)
    for ln, m, h, n in todo:
        if not h[n].delta.mergeable:
            raise AdapterStateError(f"adapter {n!r} on {ln!r} is a {type(h[n].delta).__name__}, whose update is not "
                                    "linear in the input, so it cannot be folded into the weight; keep it unmerged")
        if n in h.merged:
            raise AdapterStateError(f"adapter {n!r} is already merged into {ln!r}; merging twice would add it twice "
                                    "(call rankwise.unmerge first)")
        tied = [o for o in owners.get(id(m.weight), []) if o != ln]
        if tied:
            raise AdapterStateError(f"the weight of {ln!r} is tied to {tied}; merging would change those layers too. "
                                    "Keep the adapter unmerged, or untie the weights first")


def unmerge(model: nn.Module) -> None:
    """Take every merged adapter back out of the base weights (newest first)."""
    for _, m, h in hosts(model):
        for n in reversed(list(h.merged)):
            h.unmerge(m, n)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` everywhere, restoring the base weights it changed."""
    _check_names(model, name)
    for _, m, h in hosts(model):
        if name not in h:
            continue
        if name in h.merged:
            h.unmerge(m, name)
        if h[name].delta.moves_base:
            h.shift_base(m, name, +1.0)
        del h[name]
        h.config.pop(name, None)
        h.active = [a for a in h.active if a != name]
        if not len(h):
            AdapterHost.detach(m)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge the active adapters, drop all adapters, and return the plain model (same object).

    Inactive adapters are discarded; base weights moved by their inits (PiSSA, …) are restored.
    """
    todo = [(ln, m, h, n) for ln, m, h in hosts(model) for n in h.active if n not in h.merged]
    _check_mergeable(model, todo)
    for _, m, h, n in todo:
        h.merge(m, n)
    for _, m, h in list(hosts(model)):
        for n in list(h.keys()):
            if n not in h.merged and h[n].delta.moves_base:
                h.shift_base(m, n, +1.0)
        AdapterHost.detach(m)
    return model


def unload(model: nn.Module) -> nn.Module:
    """Drop all adapters without merging: the original base model comes back."""
    for n in adapter_names(model):
        delete_adapter(model, n)
    return model
