"""Which parameters get low-rank optimizer state: ``low_rank_groups``.

    groups = rankwise.optim.low_rank_groups(model, rank=128, update_gap=200, scale=0.25)
    opt = rankwise.optim.GaLoreAdamW(groups, lr=1e-2)

Default selection (GaLore's): the 2-D weights of the layers inside the model's repeated blocks (any
module whose name has a numbered segment, e.g. ``model.layers.3.self_attn.q_proj``), never embeddings,
the output head or norms. A model without numbered blocks falls back to every 2-D layer weight minus
embeddings and the head. ``targets``/``exclude`` select layers exactly as ``rankwise.adapt`` does (names,
name suffixes, regexes, module types: :func:`rankwise.core.targeting.resolve_targets`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..core.targeting import name_matches, output_head_names, resolve_targets
from ..errors import ConfigError

_IN_BLOCK = re.compile(r"(^|\.)\d+(\.|$)")


def _weights(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.dim() == 2 and p.requires_grad]


def default_targets(model: nn.Module, exclude: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """The layers GaLore projects by default (module docstring), in model order."""
    named = [(n, m) for n, m in model.named_modules() if n]
    heads = output_head_names(model, named)
    layers = [(n, m) for n, m in named
              if n not in heads and not isinstance(m, nn.Embedding) and "norm" not in type(m).__name__.lower()
              and _weights(m) and not any(name_matches(e, n) for e in exclude)]
    in_blocks = [(n, m) for n, m in layers if _IN_BLOCK.search(n)]
    return in_blocks or layers


def low_rank_groups(model: nn.Module, rank: int = 128, update_gap: int = 200, scale: float | None = None,
                    projector: str | None = None, targets=None, exclude: Sequence[str] = (),
                    lr: float | None = None, weight_decay: float | None = None, **options: Any) -> list[dict]:
    """Param groups for a low-rank optimizer: the selected 2-D weights with ``rank`` set, the rest plain.

    Args:
        model: the model.
        rank, update_gap, scale, projector: the low-rank group's options (``scale``/``projector`` None: the
            optimizer's default); any other option (``moments``, ``lazy_refresh``, ``niter``, …) via ``options``.
        targets: None for the default selection, else names / regexes / module types as in ``rankwise.adapt``.
        exclude: names, suffixes or regexes of layers never to project.
        lr, weight_decay: set on both groups if given (else the optimizer's).

    Returns:
        ``[{"params": plain}, {"params": low_rank, "rank": ..., ...}]`` (an empty plain group is dropped).

    Raises:
        ConfigError: the selection holds no trainable 2-D weight, or rank < 1.
        TargetError: a target matches nothing (with close names).
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConfigError(f"rank must be a positive integer, got {rank!r}")
    if targets is None:
        layers = default_targets(model, exclude)
    else:
        layers = [(m.name, m.module) for m in resolve_targets(model, targets, exclude)]
    chosen: list[nn.Parameter] = []
    for _, module in layers:
        for p in _weights(module):
            if not any(p is q for q in chosen):
                chosen.append(p)
    if not chosen:
        names = [n for n, _ in layers][:5]
        raise ConfigError(f"low_rank_groups: targets {targets!r} select no trainable 2-D weight (layers: {names}); "
                          "low-rank projection applies to matrices: target Linear/Conv1D layers")
    ids = {id(p) for p in chosen}
    plain = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    low = {"params": chosen, "rank": rank, "update_gap": update_gap}
    low.update({k: v for k, v in dict(scale=scale, projector=projector, **options).items() if v is not None})
    common = {k: v for k, v in dict(lr=lr, weight_decay=weight_decay).items() if v is not None}
    groups = ([{"params": plain, **common}] if plain else []) + [{**low, **common}]
    return groups
