"""Which modules an adapter goes on.

A target is one of:

* ``"all-linear"`` — every ``nn.Linear`` / HF ``Conv1D`` except the output head (the model's
  ``get_output_embeddings()``, or a last-level name ``lm_head``, ``classifier`` or ``score``);
* a plain name — matches the module with that full name or whose name ends with ``"." + name``;
* a regex (any string with regex metacharacters) — ``re.fullmatch`` against the full name;
* an ``nn.Module`` subclass — every module that is an instance of it.

Every target must match at least one supported layer, else ``TargetError`` lists close names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import TargetError
from .geometry import KINDS, LayerGeometry, layer_kind

ALL_LINEAR = "all-linear"
HEAD_NAMES = ("lm_head", "classifier", "score")
_REGEX_CHARS = set("^$*+?[](){}|\\")


@dataclass(frozen=True)
class Match:
    """A selected layer: its full name, the module, and its geometry."""

    name: str
    module: nn.Module
    geometry: LayerGeometry


def _as_list(targets) -> list:
    return [targets] if isinstance(targets, str | type) else list(targets)


def _is_regex(t: str) -> bool:
    return any(c in _REGEX_CHARS for c in t)


def name_matches(target: str, name: str) -> bool:
    """Plain names match exactly or as a dotted suffix; strings with regex characters fullmatch."""
    if _is_regex(target):
        return re.fullmatch(target, name) is not None
    return name == target or name.endswith("." + target)


def output_head_names(model: nn.Module, named: list[tuple[str, nn.Module]]) -> set[str]:
    """Names of the output head: ``get_output_embeddings()`` if the model has it, plus lm_head/classifier/score."""
    heads = set()
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        try:
            head = get_out()
        except Exception:  # models that raise NotImplementedError
            head = None
        if head is not None:
            heads |= {n for n, m in named if m is head}
    heads |= {n for n, _ in named if n.rsplit(".", 1)[-1] in HEAD_NAMES}
    return heads


def _close(target: str, names: list[str]) -> list[str]:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n})
    close = difflib.get_close_matches(target, leaves, n=5, cutoff=0.5)
    close += [n for n in difflib.get_close_matches(target, names, n=3, cutoff=0.5) if n not in close]
    return close


def resolve_targets(model: nn.Module, targets, exclude: Sequence[str] = ()) -> list[Match]:
    """Return the supported layers selected by ``targets`` minus ``exclude``, in model order.

    Raises:
        TargetError: a target matches nothing (with close candidates), or matches only layer types
            rankwise cannot adapt, or an explicitly named module is of an unsupported type.
    """
    named = [(n, m) for n, m in model.named_modules() if n and not _is_internal(n)]
    all_names = [n for n, _ in named]
    chosen: dict[str, nn.Module] = {}
    for t in _as_list(targets):
        if isinstance(t, type):
            hits = [(n, m) for n, m in named if isinstance(m, t)]
            what = f"module type {t.__name__}"
        elif t == ALL_LINEAR:
            heads = output_head_names(model, named)
            hits = [(n, m) for n, m in named if layer_kind(m) in ("linear", "conv1d") and n not in heads]
            what = "'all-linear'"
        else:
            hits = [(n, m) for n, m in named if name_matches(t, n)]
            what = f"target {t!r}"
        if not hits:
            hint = ""
            if isinstance(t, str) and t != ALL_LINEAR:
                close = _close(t, all_names)
                hint = f"; close names in the model: {close}" if close else "; no similar module names"
            raise TargetError(f"{what} matches no module of {type(model).__name__}{hint}")
        supported = [(n, m) for n, m in hits if layer_kind(m) is not None]
        if not supported:
            kinds = sorted({type(m).__name__ for _, m in hits})
            raise TargetError(f"{what} matches only unsupported layer types {kinds} (e.g. {hits[0][0]!r}); "
                              f"rankwise adapts {list(KINDS)} (Conv2d with groups=1); target their names instead")
        if isinstance(t, str) and not _is_regex(t) and t != ALL_LINEAR:
            # an explicit name that hits a container or an unsupported leaf is a mistake, not a wildcard
            bad = [(n, m) for n, m in hits if layer_kind(m) is None]
            if bad:
                n, m = bad[0]
                raise TargetError(f"target {t!r} names {n!r}, a {type(m).__name__}, which rankwise cannot adapt; "
                                  f"supported: nn.Linear, transformers Conv1D, nn.Embedding, nn.Conv2d (groups=1)")
        for n, m in supported:
            chosen[n] = m
    for e in exclude:
        chosen = {n: m for n, m in chosen.items() if not name_matches(e, n)}
    out = [Match(n, m, LayerGeometry.of(m)) for n, m in named if n in chosen]
    if not out:
        raise TargetError(f"targets {targets!r} minus exclude {list(exclude)!r} leave no layer to adapt")
    return out


def _is_internal(name: str) -> bool:
    """Modules that rankwise itself added (adapter hosts) are never targets."""
    return ".rankwise" in name or name.startswith("rankwise")
