"""rankwise's own adapter format: ``adapter.safetensors`` + ``adapter.json``.

``adapter.safetensors`` holds each adapter's state dict under ``<layer>.<key>`` (for LoRA:
``delta.lora_A``, ``delta.lora_B``; DoRA adds ``wrapper.magnitude``; an init that moved W0 adds
``delta.lora_A_init``/``delta.lora_B_init``, so loading onto the public base model re-applies
W0 ← W0 − ΔW₀ and training resumes exactly). Tensors drawn from a seed (VeRA's and RandLoRA's shared
bases, NOLA's bases, FourierFT's frequency locations) are *not* stored: the config records every
option with its value (the seeds included) and each layer lists the regenerated tensors' shapes
under ``regenerated``, which loading checks after rebuilding them. ``adapter.json`` holds the config, the rankwise
version, and per layer its kind, stored weight shape, rank and α. The JSON is written last, so a
folder with ``adapter.json`` is complete.
Whole modules trained with the adapter (``LoRAConfig.modules_to_save``) are stored as
``__modules_to_save__.<parameter name>``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .._version import __version__
from ..config import LoRAConfig
from ..core import api
from ..core.saved_modules import saved_tensors
from ..errors import AdapterFileError, ConfigError
from .files import read_json, read_tensors, write_json, write_tensors
from .payload import Payload

FORMAT = "rankwise.adapter"
FORMAT_VERSION = 1
TENSORS = "adapter.safetensors"
META = "adapter.json"
SAVED_PREFIX = "__modules_to_save__."


def save_native(model: nn.Module, folder: Path, name: str) -> None:
    """Write adapter ``name`` of ``model`` to ``folder`` in rankwise's format (tensors first, JSON last)."""
    config = api.adapter_config(model, name)
    tensors, layers, seen = {}, {}, set()
    for layer, module, host in api.hosts(model):
        if name not in host:
            continue
        adapter = host[name]
        for k, t in adapter.state_dict().items():
            # tensors shared across layers (DenseLoRA's encoder/decoder) are stored under each layer
            tensors[f"{layer}.{k}"] = t.clone() if t.untyped_storage().data_ptr() in seen else t
            seen.add(t.untyped_storage().data_ptr())
        layers[layer] = {"kind": host.geometry.kind, "weight_shape": list(module.weight.shape),
                         "rank": adapter.delta.rank, "alpha": config.alpha_for(layer),
                         "scale": adapter.delta.scale, "moves_base": adapter.delta.moves_base}
        regenerated = adapter.regenerated_shapes()
        if regenerated:  # seeded tensors: not stored, rebuilt from the config's seed on load
            layers[layer]["regenerated"] = {k: list(v) for k, v in regenerated.items()}
    cfg = config.to_dict()
    cfg["options"] = resolved_options(config)
    for k, t in saved_tensors(model, config.modules_to_save).items():
        tensors[SAVED_PREFIX + k] = t
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "rankwise_version": __version__,
            "adapter_name": name, "model_class": type(model).__name__, "config": cfg, "layers": layers}
    write_tensors(folder / TENSORS, tensors, metadata={"format": FORMAT})
    write_json(folder / META, meta)


def resolved_options(config: LoRAConfig) -> dict:
    """Every option the config's parameterisation and init declare, with its value (seeds included), so a
    file keeps regenerating the same tensors even if a default changes in a later rankwise."""
    from ..core.registry import PARAMETERISATION_OPTIONS
    from ..init.registry import get_initialiser

    declared = {**get_initialiser(config.init).options, **PARAMETERISATION_OPTIONS.get(config.parameterisation, {})}
    return {k: config.option(k) for k in declared}


def read_native(folder: Path) -> Payload:
    """Parse and check a rankwise adapter folder; nothing is applied to a model here."""
    meta_path, tensor_path = folder / META, folder / TENSORS
    meta = read_json(meta_path)
    if meta.get("format") != FORMAT:
        raise AdapterFileError(f"{meta_path} is not a rankwise adapter file (format={meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterFileError(f"{meta_path} has format_version {meta['format_version']}, newer than this rankwise "
                               f"({__version__}) reads; upgrade rankwise")
    try:
        config = LoRAConfig.from_dict(meta["config"])
        layers_meta = meta["layers"]
        layers = {n: {"rank": int(v["rank"]), "alpha": float(v["alpha"])} for n, v in layers_meta.items()}
        shapes = {n: tuple(v["weight_shape"]) for n, v in layers_meta.items()}
        regenerated = {n: {k: tuple(s) for k, s in v.get("regenerated", {}).items()} for n, v in layers_meta.items()}
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise AdapterFileError(f"{meta_path} is malformed: {e}") from e
    flat = read_tensors(tensor_path)
    tensors: dict[str, dict] = {n: {} for n in layers}
    module_tensors = {k[len(SAVED_PREFIX):]: flat.pop(k) for k in list(flat) if k.startswith(SAVED_PREFIX)}
    for key, t in flat.items():
        layer = _owner(key, layers)
        if layer is None:
            raise AdapterFileError(f"{tensor_path}: tensor {key!r} belongs to no layer listed in {meta_path}")
        tensors[layer][key[len(layer) + 1:]] = t
    for n, ts in tensors.items():
        if not ts:
            raise AdapterFileError(f"{tensor_path} has no tensors for layer {n!r}; the file is incomplete")
    return Payload(config, layers, tensors, tensor_path, weight_shapes=shapes, regenerated=regenerated,
                   module_tensors=module_tensors)


def _owner(key: str, layers: dict) -> str | None:
    # the longest layer name that prefixes the key (names can nest: "mlp" and "mlp.fc")
    best = None
    for n in layers:
        if key.startswith(n + ".") and (best is None or len(n) > len(best)):
            best = n
    return best
