"""Builders: config → adapter on one layer. Adding a parameterisation is one entry here."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ..adapters import (
    abba,
    deep_lora,
    dense_lora,
    fourierft,
    hra,
    loldu,
    mora,
    nola,
    qr_lora,
    randlora,
    svfit,
    svft,
    vera,
)
from ..adapters.adalora import ADALORA_OPTIONS, AdaLoRA
from ..adapters.bca import CoreLoRA, LoRAXS
from ..adapters.dora import DoRA
from ..adapters.dylora import DYLORA_OPTIONS, DyLoRA
from ..adapters.lora import LoRA
from ..adapters.sora import SORA_OPTIONS, SoRA
from .context import BuildContext
from .contract import Parameterisation, Wrapper
from .geometry import LayerGeometry

# name -> fn(geometry, rank, scale, dtype, device[, ctx=BuildContext]) -> Parameterisation
PARAMETERISATIONS: dict[str, Callable[..., Parameterisation]] = {
    "lora": LoRA, "bca": CoreLoRA, "lora-xs": LoRAXS, "adalora": AdaLoRA, "sora": SoRA, "dylora": DyLoRA}
# name -> {option: default}: the ``LoRAConfig.options`` keys each parameterisation reads
PARAMETERISATION_OPTIONS: dict[str, dict[str, object]] = {
    "lora": {}, "bca": {}, "lora-xs": {}, "adalora": ADALORA_OPTIONS, "sora": SORA_OPTIONS, "dylora": DYLORA_OPTIONS}
# training rule -> {option: default}: ``LoRAConfig.options`` keys read by gradient rules that work with any
# parameterisation (rankwise.optim: LoRA-Pro, AltLoRA, ALLoRA). Always allowed; prefixed by the rule's name.
RULE_OPTIONS: dict[str, dict[str, object]] = {}


def register_parameterisation(name: str, builder: Callable[..., Parameterisation],
                              options: dict[str, object] | None = None) -> None:
    """Add a parameterisation and the ``LoRAConfig.options`` it reads (with defaults)."""
    PARAMETERISATIONS[name] = builder
    PARAMETERISATION_OPTIONS[name] = dict(options or {})


def make_parameterisation(name: str, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device,
                          ctx: BuildContext) -> Parameterisation:
    """Build one layer's parameterisation; builders that accept ``ctx`` get the adapter's BuildContext."""
    builder = PARAMETERISATIONS[name]
    target = builder.__init__ if isinstance(builder, type) else builder
    if "ctx" in inspect.signature(target).parameters:
        return builder(geometry, rank, scale, dtype, device, ctx=ctx)
    return builder(geometry, rank, scale, dtype, device)


def make_wrapper(dora: bool, geometry: LayerGeometry, dtype: torch.dtype, device,
                 delta: Parameterisation | None = None) -> Wrapper:
    """The wrapper axis: the form's own (multiplicative HRA), DoRA's magnitude/direction split, or plain addition."""
    own = delta.make_wrapper() if delta is not None else None
    if own is not None:
        return own
    return DoRA(geometry.out_features, dtype, device) if dora else Wrapper()


def adapter_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """Adapters over half-precision weights are kept in fp32 (PEFT's ``autocast_adapter_dtype``)."""
    return torch.float32 if weight_dtype in (torch.float16, torch.bfloat16) else weight_dtype


# reduced-parameter, random-basis, structured and multiplicative forms (rankwise.adapters.*)
register_parameterisation("vera", vera.VeRA, vera.OPTIONS)
register_parameterisation("nola", nola.NOLA, nola.OPTIONS)
register_parameterisation("randlora", randlora.RandLoRA, randlora.OPTIONS)
register_parameterisation("svfit", svfit.SVFit)
register_parameterisation("svft", svft.SVFT, svft.OPTIONS)
register_parameterisation("loldu", loldu.LoLDU)
register_parameterisation("qr-lora", qr_lora.QRLoRA)
register_parameterisation("mora", mora.MoRA, mora.OPTIONS)
register_parameterisation("hra", hra.HRA, hra.OPTIONS)
register_parameterisation("fourierft", fourierft.FourierFT, fourierft.OPTIONS)
register_parameterisation("abba", abba.ABBA, abba.OPTIONS)
register_parameterisation("deep-lora", deep_lora.DeepLoRA, deep_lora.OPTIONS)
register_parameterisation("dense-lora", dense_lora.DenseLoRA)
