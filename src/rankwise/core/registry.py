"""Builders: config → adapter on one layer. Adding a parameterisation is one entry here."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..adapters.adalora import ADALORA_OPTIONS, AdaLoRA
from ..adapters.dora import DoRA
from ..adapters.dylora import DYLORA_OPTIONS, DyLoRA
from ..adapters.lora import LoRA
from ..adapters.sora import SORA_OPTIONS, SoRA
from .contract import Parameterisation, Wrapper
from .geometry import LayerGeometry

# name -> fn(geometry, rank, scale, dtype, device) -> Parameterisation
PARAMETERISATIONS: dict[str, Callable[..., Parameterisation]] = {
    "lora": LoRA, "adalora": AdaLoRA, "sora": SoRA, "dylora": DyLoRA}
# name -> {option: default}: the ``LoRAConfig.options`` keys each parameterisation reads
PARAMETERISATION_OPTIONS: dict[str, dict[str, object]] = {
    "lora": {}, "adalora": ADALORA_OPTIONS, "sora": SORA_OPTIONS, "dylora": DYLORA_OPTIONS}
# training rule -> {option: default}: ``LoRAConfig.options`` keys read by gradient rules that work with any
# parameterisation (rankwise.optim: LoRA-Pro, AltLoRA, ALLoRA). Always allowed; prefixed by the rule's name.
RULE_OPTIONS: dict[str, dict[str, object]] = {}


def make_wrapper(dora: bool, geometry: LayerGeometry, dtype: torch.dtype, device) -> Wrapper:
    """The wrapper axis: DoRA's magnitude/direction split, or plain addition."""
    return DoRA(geometry.out_features, dtype, device) if dora else Wrapper()


def adapter_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """Adapters over half-precision weights are kept in fp32 (PEFT's ``autocast_adapter_dtype``)."""
    return torch.float32 if weight_dtype in (torch.float16, torch.bfloat16) else weight_dtype
