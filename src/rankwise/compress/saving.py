"""save() / load(): a compressed model as safetensors + a JSON config recording the factorisation.

A saved folder holds

* ``model.safetensors`` — the full state dict (factor weights under ``<layer>.down.weight`` /
  ``<layer>.up.weight``); tensors shared by several names (tied embeddings) are stored once;
* ``compression.json`` — format version, the factorised layers (shape, rank, bias, original kind),
  the plan summary (method, allocation, ratio), the model class and, for transformers models, its
  config, so :func:`load` can rebuild the model with no other input.

Nothing is unpickled when loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdapterFileError, ConfigError
from ..io.files import read_json, read_tensors, write_json, write_tensors
from .apply import ATTR, _parent, compressed_layers
from .lowrank_linear import LowRankLinear

FORMAT = "rankwise-compress"
VERSION = 1
CONFIG_NAME = "compression.json"
WEIGHTS_NAME = "model.safetensors"


def save(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model`` (compressed or not) to ``directory``; returns the folder path."""
    directory = Path(directory)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in state.items():
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
                 t.dtype)
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]  # a tied tensor: store once
            continue
        seen[ident] = key
        tensors[key] = t
    layers = {name: {"in_features": m.in_features, "out_features": m.out_features, "rank": m.rank,
                     "bias": m.up.bias is not None, "kind": m.kind} for name, m in compressed_layers(model).items()}
    meta: dict[str, Any] = {"format": FORMAT, "format_version": VERSION, "architecture": type(model).__name__,
                            "layers": layers, "aliases": aliases, "compression": getattr(model, ATTR, None)}
    hf_config = getattr(model, "config", None)
    if hf_config is not None and hasattr(hf_config, "to_dict"):
        meta["model_config"] = hf_config.to_dict()
    write_tensors(directory / WEIGHTS_NAME, tensors, metadata={"format": FORMAT})
    write_json(directory / CONFIG_NAME, _jsonable(meta))
    return directory


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)  # dtypes and other config oddities


def _build_transformers(meta: dict, path: Path) -> nn.Module:
    cfg = meta.get("model_config")
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ConfigError(f"{path} was saved from a {meta.get('architecture')} that is not a transformers model; "
                          "pass skeleton=<a freshly built instance of it> to load into")
    import transformers

    cls = getattr(transformers, str(meta.get("architecture")), None)
    if cls is None:
        raise ConfigError(f"transformers has no class {meta.get('architecture')!r}; pass skeleton= to load into")
    cfg = dict(cfg)
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    return cls(config)


def load(directory: str | Path, skeleton: nn.Module | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save`.

    Args:
        directory: the saved folder.
        skeleton: a module of the original (uncompressed) architecture to load into, in place; required
            when the saved model is not a transformers model. Without it, the transformers class is built
            from the saved config.

    Raises:
        AdapterFileError: files missing, corrupt, of another format, or not matching the skeleton.
    """
    directory = Path(directory)
    meta = read_json(directory / CONFIG_NAME)
    if meta.get("format") != FORMAT:
        raise AdapterFileError(f"{directory / CONFIG_NAME} is not a rankwise compression config (format="
                               f"{meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > VERSION:
        raise AdapterFileError(f"{directory} uses format version {meta['format_version']}; this rankwise reads "
                               f"≤ {VERSION}: upgrade rankwise")
    tensors = read_tensors(directory / WEIGHTS_NAME)
    for alias, source in meta.get("aliases", {}).items():
        if source not in tensors:
            raise AdapterFileError(f"{directory}: alias {alias!r} points at missing tensor {source!r}")
        tensors[alias] = tensors[source]
    model = skeleton if skeleton is not None else _build_transformers(meta, directory)
    if skeleton is None:
        floats = {t.dtype for t in tensors.values() if t.is_floating_point()}
        if len(floats) == 1:
            model.to(next(iter(floats)))
        model.eval()
    swaps = []
    for name, spec in meta.get("layers", {}).items():  # check every layer before changing any
        try:
            old = model.get_submodule(name)
        except AttributeError as e:
            raise AdapterFileError(f"{directory}: factorised layer {name!r} is not in {type(model).__name__}") from e
        if not hasattr(old, "weight") and not isinstance(old, LowRankLinear):
            raise AdapterFileError(f"{directory}: {name!r} is a {type(old).__name__}, not a Linear layer")
        swaps.append((name, spec, old))
    for name, spec, old in swaps:
        w = old.up.weight if isinstance(old, LowRankLinear) else old.weight
        new = LowRankLinear(spec["in_features"], spec["out_features"], spec["rank"], bias=spec["bias"],
                            kind=spec.get("kind", "linear"), device=w.device, dtype=w.dtype)
        new.train(old.training)
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, new)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise AdapterFileError(f"{directory} does not match {type(model).__name__}: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
    if meta.get("compression") is not None:
        setattr(model, ATTR, meta["compression"])
    return model
