"""PEFT's formats for the non-LoRA adapters it shares with rankwise: VeRA, RandLoRA, HRA, FourierFT.

Tensor names (``base_model.model.<layer>.<name>``) and config fields follow Hugging Face PEFT 0.21:

* VeRA: ``vera_lambda_b``, ``vera_lambda_d`` (+ shared ``base_model.vera_A``/``vera_B``);
  config VERA with r, projection_prng_key (= ``vera_seed``), d_initial.
* RandLoRA: ``randlora_lambda``, ``randlora_gamma`` (+ shared ``base_model.randlora_A``/``randlora_B``);
  config RANDLORA with r, randlora_alpha (= α), projection_prng_key (= ``randlora_seed``).
* HRA: ``hra_u``; config HRA with r, apply_GS (= ``hra_apply_gs``).
* FourierFT: ``fourierft_spectrum``; config FOURIERFT with n_frequency, scaling, random_loc_seed.

The tensor names are the same in rankwise (under ``delta.``).
VeRA's and RandLoRA's shared bases are drawn exactly as PEFT draws them from the same seed. They
are written to the file (PEFT's default ``save_projection=True``, so PEFT loads them without
regenerating); when reading, the file's bases are checked against rankwise's regeneration from
the file's seed, and a mismatch is an error rather than a silently different model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import LoRAConfig
from ..core import api
from ..errors import AdapterFileError
from .files import read_tensors, write_json, write_tensors
from .payload import Payload

PREFIX = "base_model.model."
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

# rankwise parameterisation -> (PEFT peft_type, per-layer tensor names)
METHODS = {
    "vera": ("VERA", ("vera_lambda_b", "vera_lambda_d")),
    "randlora": ("RANDLORA", ("randlora_lambda", "randlora_gamma")),
    "hra": ("HRA", ("hra_u",)),
    "fourierft": ("FOURIERFT", ("fourierft_spectrum",)),
}
PEFT_TYPES = {t: name for name, (t, _) in METHODS.items()}
_SHARED = {"vera": ("vera_A", "vera_B"), "randlora": ("randlora_A", "randlora_B")}


def save_peft_method(model: nn.Module, folder: Path, name: str) -> None:
    """Write adapter ``name`` (VeRA / RandLoRA / HRA / FourierFT) as a PEFT folder."""
    config = api.adapter_config(model, name)
    method = config.parameterisation
    peft_type, keys = METHODS[method]
    if config.dora:
        raise AdapterFileError(f"PEFT's {peft_type} has no DoRA variant; save this adapter with format='rankwise'")
    if config.alpha_pattern and method == "randlora":
        raise AdapterFileError("PEFT's RandLoRA has one α for all layers; this adapter uses alpha_pattern — save it "
                               "with format='rankwise'")
    tensors, layers, kinds = {}, [], set()
    for layer, _, host in api.hosts(model):
        if name not in host:
            continue
        delta = host[name].delta
        layers.append(layer)
        kinds.add(host.geometry.kind)
        for k in keys:
            tensors[f"{PREFIX}{layer}.{k}"] = getattr(delta, k).detach()
    if method in _SHARED:
        for k, t in zip(_SHARED[method], _shared_bases(model, name, method), strict=True):
            tensors[f"base_model.{k}"] = t
    cfg = {"peft_type": peft_type, "task_type": None, "target_modules": sorted(layers), "bias": "none",
           "modules_to_save": None, "inference_mode": True, "layers_to_transform": None, "layers_pattern": None,
           "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
           "revision": None, "init_weights": True}
    fan_in_fan_out = kinds == {"conv1d"}
    if method == "vera":
        cfg.update(r=config.rank, projection_prng_key=int(config.option("vera_seed")), save_projection=True,
                   d_initial=float(config.option("vera_d_initial")), vera_dropout=config.dropout,
                   fan_in_fan_out=fan_in_fan_out)
    elif method == "randlora":
        cfg.update(r=config.rank, randlora_alpha=config.alpha, projection_prng_key=int(config.option("randlora_seed")),
                   save_projection=True, randlora_dropout=config.dropout, sparse=False, very_sparse=False,
                   fan_in_fan_out=fan_in_fan_out)
    elif method == "hra":
        cfg.update(r=config.rank, apply_GS=bool(config.option("hra_apply_gs")), exclude_modules=None)
    else:
        cfg.update(n_frequency=int(config.option("fourierft_n_frequency")), n_frequency_pattern={},
                   scaling=float(config.option("fourierft_scaling")),
                   random_loc_seed=int(config.option("fourierft_seed")),
                   fan_in_fan_out=fan_in_fan_out, exclude_modules=None,
                   init_weights=bool(config.option("fourierft_init_zero")))
    if method == "hra" and kinds != {"linear"}:
        raise AdapterFileError(f"PEFT's HRA adapts nn.Linear layers only; this adapter has {sorted(kinds)} — save it "
                               "with format='rankwise'")
    if kinds - {"linear", "conv1d"}:
        raise AdapterFileError(f"PEFT's {peft_type} adapts Linear/Conv1D layers only; this adapter has {sorted(kinds)}")
    write_tensors(folder / WEIGHTS[0], tensors, metadata={"format": "pt"})
    write_json(folder / "adapter_config.json", cfg)


def _shared_bases(model: nn.Module, name: str, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The full (unsliced) shared bases of a VeRA/RandLoRA adapter: redrawn from its seed over its layers."""
    from ..core.context import BuildContext
    from ..core.geometry import LayerGeometry

    config = api.adapter_config(model, name)
    geos = {ln: LayerGeometry.of(m) for ln, m, h in api.hosts(model) if name in h}
    ctx = BuildContext(config, name, geos)
    if method == "vera":
        from ..adapters.vera import vera_bases

        return vera_bases(ctx, config.rank, torch.float32, "cpu")
    from ..adapters.randlora import randlora_bases

    return randlora_bases(ctx, config.rank, torch.float32, "cpu")


def read_peft_method(folder: Path, cfg: dict, cfg_path: Path) -> Payload:
    """Parse a PEFT VeRA / RandLoRA / HRA / FourierFT folder into a rankwise payload."""
    method = PEFT_TYPES[cfg["peft_type"]]
    _, keys = METHODS[method]
    weights = next((folder / w for w in WEIGHTS if (folder / w).exists()), None)
    if weights is None:
        raise AdapterFileError(f"{folder} has adapter_config.json but no {' or '.join(WEIGHTS)}")
    for key in ("modules_to_save", "layers_to_transform", "n_frequency_pattern", "rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise AdapterFileError(f"{cfg_path}: option {key}={cfg[key]!r} is not supported by rankwise")
    if cfg.get("sparse") or cfg.get("very_sparse"):
        raise AdapterFileError(f"{cfg_path}: RandLoRA's sparse bases are not supported by rankwise")
    flat = read_tensors(weights)
    shared = {k[len("base_model."):]: t for k, t in flat.items() if not k.startswith(PREFIX)}
    per_layer: dict[str, dict[str, torch.Tensor]] = {}
    for k, t in flat.items():
        if not k.startswith(PREFIX):
            continue
        layer, _, leaf = k[len(PREFIX):].rpartition(".")
        if leaf in keys:
            per_layer.setdefault(layer, {})[f"delta.{leaf}"] = t
        elif leaf not in _SHARED.get(method, ()):  # PEFT also writes per-layer copies of the shared bases
            raise AdapterFileError(f"{weights}: tensor {k!r} is not a {cfg['peft_type']} tensor rankwise understands")
    if not per_layer:
        raise AdapterFileError(f"{weights} holds no {cfg['peft_type']} tensors")
    for layer, ts in per_layer.items():
        if len(ts) != len(keys):
            raise AdapterFileError(f"{weights}: layer {layer!r} lacks some of its tensors (needs {list(keys)})")
    rank = int(cfg.get("r", 8))
    alpha = float(rank)
    if method == "vera":
        options = {"vera_seed": int(cfg.get("projection_prng_key", 0)),
                   "vera_d_initial": float(cfg.get("d_initial", 0.1))}
        dropout = float(cfg.get("vera_dropout", 0.0) or 0.0)
    elif method == "randlora":
        options = {"randlora_seed": int(cfg.get("projection_prng_key", 0))}
        alpha = float(cfg.get("randlora_alpha", 640))
        dropout = float(cfg.get("randlora_dropout", 0.0) or 0.0)
    elif method == "hra":
        options = {"hra_apply_gs": bool(cfg.get("apply_GS", False))}
        dropout = 0.0
    else:
        nf = int(cfg.get("n_frequency", 1000))
        options = {"fourierft_n_frequency": nf, "fourierft_scaling": float(cfg.get("scaling", 150.0)),
                   "fourierft_seed": int(cfg.get("random_loc_seed", 777))}
        dropout = 0.0
    config = LoRAConfig(rank=rank, alpha=alpha, targets=sorted(per_layer), dropout=dropout, parameterisation=method,
                        options=options)
    layers = {n: {"rank": rank, "alpha": alpha} for n in per_layer}
    payload = Payload(config, layers, per_layer, weights)
    if method in _SHARED and all(k in shared for k in _SHARED[method]):
        payload.check_shared = {k: shared[k] for k in _SHARED[method]}
    return payload
