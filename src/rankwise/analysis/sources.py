"""Where the analysed matrices come from: a model (plain or carrying rankwise adapters), a state dict, a file.

Every source becomes an ordered ``{layer name: Weight}`` of matrix views (m, n) = (out, in)
(see ``core.geometry``), fp32 (fp64 kept), detached copies, so analysis never changes the model.

* ``nn.Module``: the supported layers that ``targets`` selects (default: every ``nn.Linear`` and
  HF ``Conv1D``, output head included; embeddings with ``include_embeddings=True``). A weight shared
  by several modules (tied embeddings) is analysed once, under its first name. Layers carrying
  rankwise adapters are read as the model computes them: W0 with every active adapter folded in
  (``which="tuned"``), or the public base weight (``which="base"``: merged adapters taken out and
  the W0 shift of PiSSA-style inits undone) — both without touching the model.
* a state dict ``{key: tensor}``: every 2-D floating tensor named ``<layer>.weight`` (or any 2-D
  key), stored layout taken as (out, in) — true for Linear, transposed for GPT-2's Conv1D,
  which leaves singular values unchanged but swaps left and right singular vectors.
* a path: a ``.safetensors`` (or weights-only ``.bin``) file is read as a state dict; a folder
  is loaded (local files only) with the transformers class its ``config.json`` names in
  ``architectures``, else ``AutoModel``, so layer names match the checkpoint's keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.geometry import acc_dtype, layer_kind
from ..core.host import AdapterHost
from ..core.targeting import name_matches, resolve_targets
from ..errors import ConfigError, TargetError

_EMBED = re.compile(r"(^|\.)(wte|wpe|embed[a-z_]*|[a-z_]*embeddings?)(\.|$)")


@dataclass
class Weight:
    """One analysed matrix.

    Attributes:
        name: the layer's name (state-dict key without ``.weight``).
        kind: ``linear``, ``conv1d``, ``embedding``, ``conv2d`` or ``tensor`` (from a state dict).
        matrix: (m, n) matrix view, detached, fp32 (fp64 kept).
    """

    name: str
    kind: str
    matrix: torch.Tensor


def _f(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(acc_dtype(t.dtype)).clone()


def load_source(source):
    """A model, state dict or path turned into something :func:`weights` reads (models stay as they are)."""
    if isinstance(source, nn.Module | Mapping):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            try:
                import transformers
            except ImportError as e:  # pragma: no cover - transformers is a dev dependency
                raise ConfigError(f"{path} is a folder; loading it needs transformers (pip install "
                                  "'rankwise[transformers]')") from e
            return _load_folder(transformers, path)
        if path.is_file():
            from ..io.files import read_tensors
            return read_tensors(path)
        raise ConfigError(f"{path} is neither a model folder nor a .safetensors file (it does not exist)")
    raise ConfigError(f"cannot analyse a {type(source).__name__}; pass an nn.Module, a state dict, "
                      "a .safetensors file or a Hugging Face model folder")


def _load_folder(transformers, path: Path) -> nn.Module:
    """The class named in config.json's ``architectures`` (so layer names match the checkpoint keys), else AutoModel."""
    from ..io.files import read_json

    cfg = path / "config.json"
    archs = read_json(cfg).get("architectures") or [] if cfg.exists() else []
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        cls = transformers.AutoModel
    return cls.from_pretrained(str(path), local_files_only=True).eval()


def _module_layers(model: nn.Module, targets, exclude: Sequence[str], include_embeddings: bool
                   ) -> list[tuple[str, nn.Module]]:
    if targets is not None:
        chosen = [(m.name, m.module) for m in resolve_targets(model, targets, exclude)]
    else:
        kinds = ("linear", "conv1d", "embedding") if include_embeddings else ("linear", "conv1d")
        chosen = [(n, m) for n, m in model.named_modules()
                  if n and ".rankwise" not in n and not n.startswith("rankwise") and layer_kind(m) in kinds
                  and not any(name_matches(e, n) for e in exclude)]
        if not chosen:
            raise TargetError(f"{type(model).__name__} has no Linear/Conv1D layer to analyse"
                              + ("" if include_embeddings else " (embeddings are left out; include_embeddings=True)"))
    seen: set[int] = set()
    out = []
    for n, m in chosen:
        if id(m.weight) in seen:  # tied weights (GPT-2 wte / lm_head): analyse once
            continue
        seen.add(id(m.weight))
        out.append((n, m))
    return out


def _layer_matrix(module: nn.Module, which: str) -> torch.Tensor:
    """The module's weight as the model computes it (``tuned``) or its public base (``base``), matrix view."""
    from ..core.geometry import LayerGeometry

    host = AdapterHost.of(module)
    w = _f(module.weight)
    if host is None:
        return LayerGeometry.of(module).matrix(w)
    g = host.geometry
    with torch.no_grad():
        if which == "tuned":
            for n in host.active:
                if n not in host.merged and host.enabled:
                    w = host[n].merged_weight(w).to(w.dtype)
        else:
            for n in reversed(host.merged):
                w = host[n].unmerged_weight(w).to(w.dtype)
            for adapter in host.values():
                if adapter.delta.moves_base:
                    w = w + g.to_weight(adapter.delta.initial_delta_matrix().to(w.dtype))
    return g.matrix(w).detach()


def has_adapters(model) -> bool:
    """True when ``model`` is an ``nn.Module`` carrying rankwise adapters."""
    return isinstance(model, nn.Module) and any(AdapterHost.of(m) is not None for m in model.modules())


def adapted_layer_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if AdapterHost.of(m) is not None]


def weights(source, targets=None, exclude: Sequence[str] = (), include_embeddings: bool = False,
            which: str = "tuned") -> dict[str, Weight]:
    """The selected matrices of ``source`` in model (or file) order. See the module docstring.

    Raises:
        ConfigError: an unreadable source or a bad ``which``.
        TargetError: nothing selected.
    """
    if which not in ("tuned", "base"):
        raise ConfigError(f"which={which!r} must be 'tuned' or 'base'")
    source = load_source(source)
    if isinstance(source, nn.Module):
        out = {}
        for n, m in _module_layers(source, targets, exclude, include_embeddings):
            out[n] = Weight(n, layer_kind(m), _layer_matrix(m, which))
        return out
    out = {}
    for key, t in source.items():
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            continue
        name = key[: -len(".weight")] if key.endswith(".weight") else key
        if not include_embeddings and targets is None and _EMBED.search(name):
            continue
        if targets is not None:
            ts = [targets] if isinstance(targets, str) else list(targets)
            if not any(isinstance(t_, str) and name_matches(t_, name) for t_ in ts):
                continue
        if any(name_matches(e, name) for e in exclude):
            continue
        out[name] = Weight(name, "tensor", _f(t))
    if not out:
        raise TargetError(f"the state dict has no 2-D weight matching targets={targets!r}, exclude={list(exclude)!r}")
    return out
