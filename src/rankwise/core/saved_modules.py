"""Whole modules trained alongside an adapter (PEFT's ``modules_to_save``).

A task head added on top of a pretrained encoder (an SST-2 classifier) starts random, so it must
be trained in full while the encoder gets a low-rank adapter. ``LoRAConfig.modules_to_save``
names such modules; ``rankwise.adapt`` leaves their parameters trainable, and the adapter files
carry their weights (rankwise's format under ``__modules_to_save__.<param>``, PEFT's format as
``base_model.model.<param>`` with the module listed in ``modules_to_save``).

Unlike PEFT, which trains a per-adapter copy and keeps the original, rankwise trains the module in
place: it is part of the model, so disabling or unloading the adapter keeps the trained head.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AdapterFileError, TargetError
from .targeting import _close, _is_internal, name_matches


def saved_modules(model: nn.Module, names) -> dict[str, nn.Module]:
    """Full name → module for every module selected by ``names`` (names, suffixes or regexes).

    Raises:
        TargetError: a name matches no module (with close candidates) or only parameterless modules.
    """
    named = [(n, m) for n, m in model.named_modules() if n and not _is_internal(n)]
    chosen: dict[str, nn.Module] = {}
    for t in names:
        hits = [(n, m) for n, m in named if name_matches(t, n)]
        if not hits:
            close = _close(t, [n for n, _ in named])
            raise TargetError(f"modules_to_save entry {t!r} matches no module of {type(model).__name__}"
                              + (f"; close names: {close}" if close else ""))
        with_params = [(n, m) for n, m in hits if any(True for _ in m.parameters())]
        if not with_params:
            raise TargetError(f"modules_to_save entry {t!r} matches only modules without parameters "
                              f"(e.g. {hits[0][0]!r})")
        chosen.update(with_params)
    # a module inside another chosen one is already covered
    return {n: m for n, m in chosen.items() if not any(n.startswith(o + ".") for o in chosen if o != n)}


def saved_parameters(model: nn.Module, names) -> dict[str, nn.Parameter]:
    """Full parameter name → parameter of every module selected by ``names`` (adapter tensors excluded)."""
    out: dict[str, nn.Parameter] = {}
    for mname, module in saved_modules(model, names).items():
        for pname, p in module.named_parameters():
            if not _is_internal(pname):
                out[f"{mname}.{pname}"] = p
    return out


def check_disjoint(model: nn.Module, names, adapted: list[str]) -> None:
    """Refuse a module that is both adapted and fully trained (its weight would be trained twice)."""
    for mname in saved_modules(model, names):
        clash = [a for a in adapted if a == mname or a.startswith(mname + ".")]
        if clash:
            raise TargetError(f"module {mname!r} is in modules_to_save and also adapted ({clash[:3]}); "
                              "exclude it from targets or from modules_to_save")


def unfreeze(model: nn.Module, names) -> None:
    """Make every parameter of the selected modules trainable."""
    for p in saved_parameters(model, names).values():
        p.requires_grad_(True)


def saved_tensors(model: nn.Module, names) -> dict[str, torch.Tensor]:
    """Detached views of the selected modules' parameters, by full parameter name."""
    return {k: p.detach() for k, p in saved_parameters(model, names).items()}


def check_saved_tensors(model: nn.Module, tensors: dict[str, torch.Tensor],
                        src) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Pair each saved ``modules_to_save`` tensor with the model's parameter of that name, checked first.

    Raises:
        AdapterFileError: a name the model lacks, a shape that differs, or NaN/inf values (naming the file ``src``).
    """
    params = dict(model.named_parameters())
    pairs = []
    for pname, t in tensors.items():
        if pname not in params:
            raise AdapterFileError(f"{src}: saved module parameter {pname!r} (modules_to_save) does not exist in "
                                   f"{type(model).__name__}")
        if tuple(params[pname].shape) != tuple(t.shape):
            raise AdapterFileError(f"{src}: saved module parameter {pname!r} has shape {tuple(t.shape)}, the model's "
                                   f"is {tuple(params[pname].shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AdapterFileError(f"{src}: saved module parameter {pname!r} contains NaN or inf")
        pairs.append((params[pname], t))
    return pairs
