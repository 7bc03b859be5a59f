"""Hugging Face PEFT's LoRA format, both ways: ``adapter_model.safetensors`` + ``adapter_config.json``.

Tensor names are ``base_model.model.<layer>.lora_A.weight`` / ``lora_B.weight`` (Linear, Conv1D,
Conv2d), ``lora_embedding_A`` / ``lora_embedding_B`` (Embedding) and ``lora_magnitude_vector``
(DoRA). rankwise's factors use PEFT's matrix-view conventions, so they map one-to-one (Conv2d
kernels are reshaped).

An adapter whose init moved W0 (PiSSA, MiLoRA, OLoRA) is written relative to the *public* base
weights as a plain LoRA of rank 2r, as PEFT's ``path_initial_model_for_weight_conversion`` does:

    ΔW = s·(B·A − B₀·A₀) = s·[B | B₀]·[A ; −A₀]

with α changed so that the scale s is unchanged (α' = 2α, or √2·α under rsLoRA).

Whole modules trained with the adapter (``modules_to_save``) are stored as PEFT does, under their
own parameter names (``base_model.model.classifier.weight``), with the modules listed in the config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..config import LoRAConfig, pattern_value
from ..core import api
from ..core.saved_modules import saved_modules, saved_tensors
from ..core.targeting import name_matches
from ..errors import AdapterFileError
from .files import read_json, read_tensors, write_json, write_tensors
from .payload import Payload
from .peft_methods import METHODS as PEFT_METHODS
from .peft_methods import PEFT_TYPES, read_peft_method, save_peft_method

PREFIX = "base_model.model."
CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Other PEFT adapter types: peft_type -> reader(folder, cfg) -> Payload, and rankwise parameterisation ->
# writer(model, folder, name); registered by the modules that implement them (e.g. io/peft_adalora.py).
PEFT_READERS: dict[str, Callable[[Path, dict], Payload]] = {}
PEFT_WRITERS: dict[str, Callable[[nn.Module, Path, str], None]] = {}
_SUFFIXES = {
    ".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_embedding_A": "A", ".lora_embedding_B": "B",
    ".lora_magnitude_vector": "M", ".lora_magnitude_vector.weight": "M", ".base_layer.weight": "W",
}


def save_peft(model: nn.Module, folder: Path, name: str) -> None:
    """Write adapter ``name`` as a PEFT LoRA folder that ``peft.PeftModel.from_pretrained`` loads."""
    config = api.adapter_config(model, name)
    if config.parameterisation in PEFT_METHODS:  # VeRA, RandLoRA, HRA, FourierFT
        return save_peft_method(model, folder, name)
    if config.parameterisation in PEFT_WRITERS:
        return PEFT_WRITERS[config.parameterisation](model, folder, name)
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    kinds = set()
    for layer, _, host in api.hosts(model):
        if name not in host:
            continue
        adapter = host[name]
        delta, geo = adapter.delta, host.geometry
        if not hasattr(delta, "lora_A"):
            raise AdapterFileError(f"adapter {name!r} on {layer!r} is a {type(delta).__name__}; the PEFT format holds "
                                   "LoRA/DoRA (and LoRA-shaped forms), VeRA, RandLoRA, HRA and FourierFT adapters "
                                   "only — save it with format='rankwise'")
        b, a = _lora_pair(delta)
        rank, alpha = delta.rank, config.alpha_for(layer)
        export = getattr(delta, "lora_export", None)
        if export is not None:  # a LoRA-shaped variant (SoRA, DyLoRA): the plain-LoRA factors of the same ΔW
            if delta.moves_base:
                raise AdapterFileError(f"adapter {name!r} on {layer!r}: {type(delta).__name__} with an init that moved "
                                       "W0 has no PEFT form; save it with format='rankwise'")
            a, b, scale = export()
            rank = a.shape[0]
            alpha = scale * (math.sqrt(rank) if config.rslora else rank)
        if delta.moves_base:  # express relative to the public W0: rank 2r, same scale
            b0, a0 = _lora_pair(delta, initial=True)
            a = torch.cat([a, -a0], 0)
            b = torch.cat([b, b0], 1)
            rank, alpha = 2 * rank, alpha * (math.sqrt(2) if config.rslora else 2)
        ranks[layer], alphas[layer] = rank, alpha
        kinds.add(geo.kind)
        key = PREFIX + layer
        if geo.kind == "embedding":
            tensors[key + ".lora_embedding_A"], tensors[key + ".lora_embedding_B"] = a, b
        elif geo.kind == "conv2d":
            tensors[key + ".lora_A.weight"] = a.reshape(rank, *geo.weight_shape[1:])
            tensors[key + ".lora_B.weight"] = b.reshape(geo.out_features, rank, 1, 1)
        else:
            tensors[key + ".lora_A.weight"], tensors[key + ".lora_B.weight"] = a, b
        if config.dora:
            mag = adapter.wrapper.magnitude.detach()
            tensors[key + ".lora_magnitude_vector"] = mag.view(1, -1, 1, 1) if geo.kind == "conv2d" else mag
    for k, t in saved_tensors(model, config.modules_to_save).items():
        tensors[PREFIX + k] = t
    to_save = sorted(saved_modules(model, config.modules_to_save)) or None
    r = max(set(ranks.values()), key=list(ranks.values()).count)  # the most common rank
    alpha = max(set(alphas.values()), key=list(alphas.values()).count)
    cfg = {
        "peft_type": "LORA", "task_type": None, "r": r, "lora_alpha": alpha,
        "target_modules": sorted(ranks), "exclude_modules": None,
        "rank_pattern": {re.escape(n): v for n, v in ranks.items() if v != r},
        "alpha_pattern": {re.escape(n): v for n, v in alphas.items() if v != alpha},
        "lora_dropout": config.dropout, "use_rslora": config.rslora, "use_dora": config.dora,
        "fan_in_fan_out": kinds == {"conv1d"}, "bias": "none", "init_lora_weights": True,
        "modules_to_save": to_save, "inference_mode": True, "lora_bias": False,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "revision": None, "layers_to_transform": None, "layers_pattern": None,
    }
    write_tensors(folder / WEIGHTS[0], tensors, metadata={"format": "pt"})
    write_json(folder / CONFIG, cfg)


def _lora_pair(delta, initial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) with ΔW = s·B·A; a parameterisation with more structure (an r×r core) provides ``lora_factors``."""
    if hasattr(delta, "lora_factors"):
        return delta.lora_factors(initial)
    if initial:
        return delta.lora_B_init, delta.lora_A_init
    return delta.lora_B.detach(), delta.lora_A.detach()


_UNSUPPORTED = {  # PEFT options that change the math in ways rankwise does not implement
    "lora_bias": False, "use_qalora": False, "layer_replication": None, "use_bdlora": None,
    "alora_invocation_tokens": None, "trainable_token_indices": None, "target_parameters": None,
}


def read_peft(folder: Path) -> Payload:
    """Parse a PEFT LoRA/rsLoRA/DoRA folder; per-layer rank from the tensors, α from PEFT's patterns."""
    cfg_path = folder / CONFIG
    cfg = read_json(cfg_path)
    if cfg.get("peft_type") in PEFT_TYPES:
        return read_peft_method(folder, cfg, cfg_path)
    if cfg.get("peft_type") in PEFT_READERS:
        return PEFT_READERS[cfg["peft_type"]](folder, cfg)
    if cfg.get("peft_type") != "LORA":
        raise AdapterFileError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not supported; rankwise reads "
                               f"PEFT LoRA/rsLoRA/DoRA adapters (peft_type 'LORA') and {sorted(PEFT_TYPES)}")
    for key, neutral in _UNSUPPORTED.items():
        if cfg.get(key, neutral) not in (neutral, False, None, [], {}):
            raise AdapterFileError(f"{cfg_path}: option {key}={cfg[key]!r} is not supported by rankwise")
    to_save = list(cfg.get("modules_to_save") or [])
    weights = next((folder / w for w in WEIGHTS if (folder / w).exists()), None)
    if weights is None:
        raise AdapterFileError(f"{folder} has {CONFIG} but no {' or '.join(WEIGHTS)}")
    flat = read_tensors(weights)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    module_tensors: dict[str, torch.Tensor] = {}
    saved_names: set[str] = set()
    for key, t in flat.items():
        body = key[len(PREFIX):] if key.startswith(PREFIX) else key
        body = re.sub(r"\.modules_to_save\.[^.]+\.", ".", body)  # older PEFT files keep the wrapper's path
        owner = _saved_owner(body, to_save)
        if owner is not None:
            module_tensors[body] = t
            saved_names.add(owner)
            continue
        for suffix, role in _SUFFIXES.items():
            if body.endswith(suffix):
                parts.setdefault(body[: -len(suffix)], {})[role] = t
                break
        else:
            raise AdapterFileError(f"{weights}: tensor {key!r} is not a LoRA tensor rankwise understands")
    use_dora = bool(cfg.get("use_dora", False))
    r_default = int(cfg.get("r", 8))
    alpha_default = float(cfg.get("lora_alpha", 8))
    config = LoRAConfig(rank=r_default, alpha=alpha_default, targets=sorted(parts) or "all-linear",
                        dropout=float(cfg.get("lora_dropout", 0.0) or 0.0), rslora=bool(cfg.get("use_rslora", False)),
                        dora=use_dora, rank_pattern={}, alpha_pattern={},
                        modules_to_save=sorted(saved_names))  # PEFT lists heads the model may lack ("score")
    layers, tensors, base = {}, {}, {}
    for layer, p in parts.items():
        if "W" in p:
            base[layer] = p.pop("W")
        if not p:
            continue
        if "A" not in p or "B" not in p or (use_dora and "M" not in p):
            need = ["A", "B"] + (["magnitude"] if use_dora else [])
            raise AdapterFileError(f"{weights}: layer {layer!r} lacks some of its LoRA tensors (needs {need}, has "
                                   f"{sorted(p)}); the file is incomplete")
        a, b = p["A"], p["B"]
        rank = a.shape[0]
        if b.shape[1] != rank:
            raise AdapterFileError(f"{weights}: layer {layer!r} has lora_A with rank {rank} but lora_B with rank "
                                   f"{b.shape[1]}")
        alpha = pattern_value(cfg.get("alpha_pattern") or {}, layer, alpha_default)
        layers[layer] = {"rank": rank, "alpha": float(alpha)}
        t = {"delta.lora_A": a.reshape(rank, -1), "delta.lora_B": b.reshape(b.shape[0], rank)}
        if use_dora:
            t["wrapper.magnitude"] = p["M"].reshape(-1)
        tensors[layer] = t
    if not layers:
        raise AdapterFileError(f"{weights} holds no LoRA tensors")
    config.alpha_pattern = {re.escape(n): v["alpha"] for n, v in layers.items() if v["alpha"] != alpha_default}
    config.rank_pattern = {re.escape(n): v["rank"] for n, v in layers.items() if v["rank"] != r_default}
    return Payload(config, layers, tensors, weights, base_tensors=base, module_tensors=module_tensors)


def _saved_owner(param: str, to_save: list[str]) -> str | None:
    """The module (of ``param``'s dotted prefixes) that a ``modules_to_save`` entry names, if any."""
    parts = param.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        if any(name_matches(t, module) for t in to_save):
            return module
    return None
