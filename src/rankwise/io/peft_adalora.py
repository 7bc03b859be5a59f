"""PEFT's AdaLoRA format, both ways (``peft_type: "ADALORA"``).

PEFT stores ``base_model.model.<layer>.lora_A`` (r', n), ``lora_E`` (r', 1), ``lora_B`` (m, r') with
only the r' triplets its ``rank_pattern`` keeps (``{"<layer>.lora_E": [bool] * init_r}``); the scale
stays α/(init_r + 1e-5). rankwise keeps all init_r triplets with ``rank_mask`` and λ = 0 for the
pruned ones, so reading scatters the kept rows back to their positions and writing gathers them:
the forward is the same in both libraries.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..adapters.adalora import ADALORA_OPTIONS, AdaLoRA
from ..config import LoRAConfig
from ..core import api
from ..errors import AdapterFileError
from .files import read_tensors, write_json, write_tensors
from .payload import Payload
from .peft_format import PEFT_READERS, PEFT_WRITERS, PREFIX, WEIGHTS

_ROLES = {"lora_A": "A", "lora_E": "E", "lora_B": "B"}


def save_peft_adalora(model: nn.Module, folder: Path, name: str) -> None:
    """Write AdaLoRA adapter ``name`` as a folder ``peft.PeftModel.from_pretrained`` loads."""
    config = api.adapter_config(model, name)
    tensors, pattern, ranks, kinds = {}, {}, set(), set()
    pruned = False
    for layer, _, host in api.hosts(model):
        if name not in host:
            continue
        d = host[name].delta
        if not isinstance(d, AdaLoRA):
            raise AdapterFileError(f"layer {layer!r} of adapter {name!r} is not AdaLoRA; cannot write PEFT AdaLoRA")
        if d.moves_base:
            raise AdapterFileError(f"adapter {name!r}: an init that moved W0 has no PEFT AdaLoRA form")
        keep = d.rank_mask
        pruned = pruned or not bool(keep.all())
        key = PREFIX + layer
        tensors[key + ".lora_A"] = d.lora_A.detach()[keep]
        tensors[key + ".lora_E"] = d.lora_E.detach()[keep]
        tensors[key + ".lora_B"] = d.lora_B.detach()[:, keep]
        pattern[f"{layer}.lora_E"] = keep.tolist()
        ranks.add(d.rank)
        kinds.add(host.geometry.kind)
    if len(ranks) != 1 or config.alpha_pattern or config.dora:
        raise AdapterFileError("PEFT's AdaLoRA format needs one init_r and one α for every layer and no DoRA")
    opts = {k: config.option(k) for k in ADALORA_OPTIONS}
    cfg = {
        "peft_type": "ADALORA", "task_type": None, "r": 8, "init_r": ranks.pop(), "lora_alpha": config.alpha,
        "target_modules": sorted(k.removesuffix(".lora_E") for k in pattern), "exclude_modules": None, **opts,
        "rank_pattern": pattern if pruned else None, "alpha_pattern": {},
        "lora_dropout": config.dropout, "use_rslora": False, "use_dora": False, "fan_in_fan_out": kinds == {"conv1d"},
        "bias": "none", "init_lora_weights": True, "modules_to_save": None, "inference_mode": True,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "revision": None, "layers_to_transform": None, "layers_pattern": None,
    }
    # total_step only drives PEFT's training schedule; PEFT requires tinit < total_step - tfinal
    cfg["total_step"] = int(opts["total_step"] or opts["tinit"] + opts["tfinal"] + 1)
    write_tensors(folder / WEIGHTS[0], tensors, metadata={"format": "pt"})
    write_json(folder / "adapter_config.json", cfg)


def read_peft_adalora(folder: Path, cfg: dict) -> Payload:
    """Parse a PEFT AdaLoRA folder into a full-rank rankwise payload with ``rank_mask``."""
    weights = next((folder / w for w in WEIGHTS if (folder / w).exists()), None)
    if weights is None:
        raise AdapterFileError(f"{folder} has adapter_config.json but no {' or '.join(WEIGHTS)}")
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise AdapterFileError(f"{folder}: AdaLoRA with use_rslora/use_dora is not supported")
    flat = read_tensors(weights)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        body = key[len(PREFIX):] if key.startswith(PREFIX) else key
        layer, _, role = body.rpartition(".")
        if role not in _ROLES:
            raise AdapterFileError(f"{weights}: tensor {key!r} is not an AdaLoRA tensor (lora_A/lora_E/lora_B)")
        parts.setdefault(layer, {})[_ROLES[role]] = t
    try:
        init_r, alpha = int(cfg["init_r"]), float(cfg.get("lora_alpha", 8))
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterFileError(f"{folder}/adapter_config.json: bad AdaLoRA fields ({e})") from e
    pattern = {k.removesuffix(".lora_E"): v for k, v in (cfg.get("rank_pattern") or {}).items()}
    options = {k: cfg.get(k, v) for k, v in ADALORA_OPTIONS.items()}
    layers, tensors = {}, {}
    for layer, p in parts.items():
        if set(p) != {"A", "E", "B"}:
            raise AdapterFileError(f"{weights}: layer {layer!r} has {sorted(p)}, needs A, E and B")
        keep = torch.tensor(pattern.get(layer, [True] * init_r), dtype=torch.bool)
        kept = int(keep.sum())
        if keep.numel() != init_r or p["A"].shape[0] != kept or p["E"].shape != (kept, 1) or p["B"].shape[1] != kept:
            raise AdapterFileError(f"{weights}: layer {layer!r} tensors do not match init_r={init_r} and its "
                                   f"rank_pattern ({kept} kept)")
        a = p["A"].new_zeros(init_r, p["A"].shape[1])
        e = p["E"].new_zeros(init_r, 1)
        b = p["B"].new_zeros(p["B"].shape[0], init_r)
        a[keep], e[keep], b[:, keep] = p["A"], p["E"], p["B"]
        layers[layer] = {"rank": init_r, "alpha": alpha}
        tensors[layer] = {"delta.lora_A": a, "delta.lora_E": e, "delta.lora_B": b, "delta.rank_mask": keep}
    if not layers:
        raise AdapterFileError(f"{weights} holds no AdaLoRA tensors")
    config = LoRAConfig(rank=init_r, alpha=alpha, targets=sorted(layers), parameterisation="adalora",
                        init="default", dropout=float(cfg.get("lora_dropout", 0.0) or 0.0),
                        options=options)
    return Payload(config, layers, tensors, weights)


PEFT_READERS["ADALORA"] = read_peft_adalora
PEFT_WRITERS["adalora"] = save_peft_adalora
