"""Builders: config → adapter on one layer. Adding a parameterisation is one entry here."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..adapters.bca import CoreLoRA, LoRAXS
from ..adapters.dora import DoRA
from ..adapters.lora import LoRA
from .contract import Parameterisation, Wrapper
from .geometry import LayerGeometry

# name -> fn(geometry, rank, scale, dtype, device) -> Parameterisation
PARAMETERISATIONS: dict[str, Callable[..., Parameterisation]] = {"lora": LoRA, "bca": CoreLoRA, "lora-xs": LoRAXS}
# name -> {option: default}: the ``LoRAConfig.options`` keys each parameterisation reads
PARAMETERISATION_OPTIONS: dict[str, dict[str, object]] = {"lora": {}, "bca": {}, "lora-xs": {}}


def make_wrapper(dora: bool, geometry: LayerGeometry, dtype: torch.dtype, device) -> Wrapper:
    """The wrapper axis: DoRA's magnitude/direction split, or plain addition."""
    return DoRA(geometry.out_features, dtype, device) if dora else Wrapper()


def adapter_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """Adapters over half-precision weights are kept in fp32 (PEFT's ``autocast_adapter_dtype``)."""
    return torch.float32 if weight_dtype in (torch.float16, torch.bfloat16) else weight_dtype
