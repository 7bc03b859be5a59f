"""plan(): choose layers, calibrate once, decompose each layer, allocate ranks under the budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..core.targeting import resolve_targets
from ..errors import ConfigError, TargetError
from . import allocate as alloc
from .calibration import Calibration, collect, default_loss, forward_batch  # noqa: F401 (forward_batch: re-export)
from .config import CompressConfig
from .decompose import Spectrum, asvd, fwsvd, svd, svd_llm
from .lowrank_linear import LowRankLinear
from .plan import LayerPlan, Plan


def target_layers(model: nn.Module, targets: Any = "all-linear", exclude=()) -> dict[str, nn.Module]:
    """Name → module of the Linear / HF Conv1D layers to compress (never the factors of a LowRankLinear)."""
    inner = {f"{n}.{c}" for n, m in model.named_modules() if isinstance(m, LowRankLinear) for c in ("down", "up")}
    out = {}
    for match in resolve_targets(model, targets, exclude):
        if match.name in inner:
            continue
        if match.geometry.kind not in ("linear", "conv1d"):
            raise TargetError(f"{match.name!r} is a {type(match.module).__name__}; compression factorises Linear and "
                              "HF Conv1D layers only — exclude it or target other names")
        out[match.name] = match.module
    if not out:
        raise TargetError(f"targets {targets!r} leave no uncompressed Linear layer in {type(model).__name__}")
    return out


def matrix(module: nn.Module) -> torch.Tensor:
    """The (m, n) = (out, in) weight view (HF Conv1D stores (in, out))."""
    w = module.weight.detach()
    return w if isinstance(module, nn.Linear) else w.T


def decompose(name: str, module: nn.Module, cfg: CompressConfig, stats: Calibration | None) -> Spectrum:
    """The layer's decomposition under ``cfg.method``."""
    w = matrix(module)
    if cfg.method == "svd":
        return svd(w)
    s = stats[name]
    if cfg.method == "fwsvd":
        return fwsvd(w, s.fisher, name)
    if cfg.method == "asvd":
        return asvd(w, s.abs_mean, cfg.asvd_alpha, name)
    return svd_llm(w, s.cov, cfg.damping, name, s.tokens)


def make_config(method: str = "svd", ratio: float | None = None, allocation: str | None = None,
                config: CompressConfig | None = None, **overrides: Any) -> CompressConfig:
    """A CompressConfig from a catalogue name (``"svd"``, ``"fwsvd"``, ``"asvd"``, ``"svd-llm"``, ``"welore"``)."""
    if config is not None:
        if ratio is not None or allocation is not None or overrides:
            raise ConfigError("pass either config= or method/ratio/allocation/options, not both")
        return config
    from ..methods import get_method

    entry = get_method(method)
    if entry.family != "compress":
        raise ConfigError(f"{method!r} is a {entry.family} method; compression methods: svd, fwsvd, asvd, svd-llm, "
                          "welore")
    kw = {k: v for k, v in {"ratio": ratio, "allocation": allocation, **overrides}.items() if v is not None}
    return entry.make_config(**kw)


def plan(model: nn.Module, ratio: float | None = None, method: str = "svd", calibration: Iterable | None = None, *,
         allocation: str | None = None, loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
         config: CompressConfig | None = None, reuse: Plan | None = None, **options: Any) -> Plan:
    """Decide each chosen layer's rank under one parameter budget; the model is not changed.

    Args:
        model: the model to compress (any nn.Module; transformers models work as is).
        ratio: fraction of the chosen layers' weight parameters removed (0.4 keeps 60%).
        method: ``"svd"``, ``"fwsvd"``, ``"asvd"``, ``"svd-llm"`` or ``"welore"`` (SVD + WeLore allocation).
        calibration: batches for the calibration pass (tensors of input ids, dicts of model kwargs, or
            tuples of positional args); needed by every method but plain SVD, and by ``"sensitivity"``.
        allocation: ``"uniform"``, ``"energy"``, ``"welore"`` or ``"sensitivity"`` (default: the method's).
        loss_fn: ``(model, batch) -> scalar`` for FWSVD and sensitivity; default: the model's own loss
            with labels = input ids.
        config: a full CompressConfig instead of method/ratio/allocation/options.
        reuse: an earlier plan of the same model and method whose decompositions are reused, so trying
            other ratios or allocations costs no new calibration pass or SVD (the spectra do not depend
            on the ratio).
        **options: other CompressConfig fields (targets, exclude, damping, asvd_alpha, ...).

    Returns:
        A :class:`Plan`; ``print(plan)`` shows layer, shape, rank, params kept and predicted error.
    """
    cfg = make_config(method, ratio, allocation, config, **options)
    layers = target_layers(model, cfg.targets, cfg.exclude)
    names = list(layers)
    reused = _reusable(reuse, cfg, names)
    cands = reuse.sensitivities if reused is not None and reuse.config.get("sensitivity_fractions") == list(
        cfg.sensitivity_fractions) and reuse.config.get("sensitivity_batches") == cfg.sensitivity_batches else None
    batches = None
    if (cfg.allocation == "sensitivity" and cands is None) or (cfg.needs_calibration and reused is None):
        if calibration is None:
            raise ConfigError(f"method {cfg.method!r} with allocation {cfg.allocation!r} needs calibration batches: "
                              "pass calibration=[batch, ...]")
        batches = list(calibration)
    if reused is not None:
        spectra = reused
    else:
        stats = None
        if cfg.method != "svd":
            transposed = frozenset(n for n, m in layers.items() if not isinstance(m, nn.Linear))
            stats = collect(model, layers, batches, need_fisher=cfg.needs_gradients, loss_fn=loss_fn,
                            transposed=transposed)
        spectra = [decompose(n, layers[n], cfg, stats) for n in names]
    shapes = [tuple(matrix(layers[n]).shape) for n in names]
    sigmas = [s.sigma for s in spectra]
    if cfg.allocation == "uniform":
        ranks = alloc.uniform(shapes, cfg.ratio)
    elif cfg.allocation == "energy":
        ranks = alloc.energy(sigmas, shapes, cfg.ratio)
    elif cfg.allocation == "welore":
        ranks = alloc.welore(sigmas, shapes, cfg.ratio)
    else:
        if cands is None or any(n not in cands for n in names):
            measured = _sensitivities(model, layers, spectra, shapes, batches[: cfg.sensitivity_batches], cfg, loss_fn)
            cands = dict(zip(names, measured, strict=True))
        ranks = alloc.sensitivity([cands[n] for n in names], shapes, cfg.ratio)
    out = []
    for n, shape, k, sp in zip(names, shapes, ranks, spectra, strict=True):
        k = None if k is None else min(k, len(sp.sigma))
        err = 0.0 if k is None else sp.relative_error(k)
        out.append(LayerPlan(n, shape, k, shape[0] * shape[1], alloc.kept_params(shape, k), err, sp))
    return Plan(cfg.method, cfg.allocation, cfg.ratio, out, cfg.to_dict(), cands)


def _reusable(reuse: Plan | None, cfg: CompressConfig, names: list[str]) -> list[Spectrum] | None:
    if reuse is None:
        return None
    by_name = {lp.name: lp.spectrum for lp in reuse.layers}
    if reuse.method != cfg.method or any(by_name.get(n) is None for n in names):
        raise ConfigError(f"reuse= holds a {reuse.method!r} plan of other layers; it can only stand in for a "
                          f"{cfg.method!r} plan of the same layers")
    return [by_name[n] for n in names]


@torch.no_grad()
def _mean_loss(model: nn.Module, batches: list, loss_fn) -> float:
    return sum(float(loss_fn(model, b)) for b in batches) / len(batches)


def _sensitivities(model, layers, spectra, shapes, batches, cfg, loss_fn) -> list[list[tuple[int, float]]]:
    """Per layer: (rank, calibration-loss increase when only this layer is truncated to that rank)."""
    loss_fn = loss_fn or default_loss
    was_training = model.training
    model.eval()
    try:
        base = _mean_loss(model, batches, loss_fn)
        out = []
        for module, sp, (m, n) in zip(layers.values(), spectra, shapes, strict=True):
            weight = module.weight
            saved = weight.detach().clone()
            cands = []
            for f in cfg.sensitivity_fractions:
                k = math.floor(f * m * n / (m + n))
                if k < 1 or k * (m + n) >= m * n or k > len(sp.sigma):
                    continue
                w_k = sp.reconstruct(k)
                with torch.no_grad():
                    weight.copy_(w_k if isinstance(module, nn.Linear) else w_k.T)
                cands.append((k, _mean_loss(model, batches, loss_fn) - base))
            with torch.no_grad():
                weight.copy_(saved)
            out.append(cands)
        return out
    finally:
        model.train(was_training)
