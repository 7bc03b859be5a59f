"""The calibration step of ``rankwise.adapt``: read the batches once, before anything is modified.

``calibrate`` runs inside ``core.api.build`` after the layers are planned and before any adapter
is built: it collects what the initialiser declared (``Initialiser.collects``), lets the
initialiser re-plan (EVA's rank redistribution), and returns each layer's statistic for the
per-layer init call. Inits that read no data ignore ``calibration``; inits that need it raise
``ConfigError`` naming the fix when it is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from torch import nn

from ..errors import ConfigError
from .batches import LossFn
from .collect import collect_gradients, collect_inputs


def calibrate(model: nn.Module, plans: list, config: Any, init: Any, calibration: Iterable | None,
              loss_fn: LossFn | None = None) -> tuple[list, dict[str, Any]]:
    """Collect ``init.collects`` over ``calibration`` for the planned layers.

    Returns:
        ``(plans, stats)``: the (possibly re-planned) layers and ``{layer name: statistic}``.
    """
    if not init.needs_calibration:
        return plans, {}
    if calibration is None:
        raise ConfigError(f"init={config.init!r} is data-driven: it reads a few calibration batches. Call "
                          f"rankwise.adapt(model, config, calibration=batches) with a list or DataLoader of batches "
                          "(dicts are passed as model(**batch), tuples as model(*batch))")
    limit = config.option("calibration_batches")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ConfigError(f"options['calibration_batches'] must be a positive int or None, got {limit!r}")
    layers = {p.name: (p.module, p.geometry) for p in plans}
    if init.collects == "gradient":
        stats: dict[str, Any] = collect_gradients(model, layers, calibration, loss_fn, limit)
    else:
        bad = [f"{p.name} ({p.geometry.kind})" for p in plans if p.geometry.kind not in ("linear", "conv1d")]
        if bad:
            raise ConfigError(f"init={config.init!r} reads layer inputs of Linear/Conv1D layers only; {bad} are not; "
                              "exclude them (config.exclude) or target linear layers")
        stats = collect_inputs(model, layers, calibration, init.collects == "inputs-normalised", limit)
    if init.prepare is not None:
        plans = init.prepare(plans, stats, config)
        if not plans:
            raise ConfigError(f"init={config.init!r} assigned rank 0 to every targeted layer; raise the rank or "
                              "target more layers")
        replanned = replanned_config(config, plans)
        for p in plans:
            p.config = replanned
    return plans, stats


def replanned_config(config: Any, plans: list) -> Any:
    """A copy of ``config`` whose rank/alpha patterns record the re-planned per-layer values (exact names first),
    so that the adapter's config, its saved files and PEFT's ``rank_pattern`` tell the truth (as PEFT's EVA does)."""
    ranks = {re.escape(p.name): p.rank for p in plans if p.rank != config.rank_for(p.name)}
    alphas = {re.escape(p.name): p.alpha for p in plans if p.alpha != config.alpha_for(p.name)}
    if not ranks and not alphas:
        return config
    return replace(config, rank_pattern={**ranks, **config.rank_pattern},
                   alpha_pattern={**alphas, **config.alpha_pattern})
