"""Finding the B·A factor pairs that adapter gradient rules (LoRA-Pro, AltLoRA, ALLoRA) act on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.contract import Wrapper
from ..errors import ConfigError

# parameterisations whose ΔW is exactly s·B·A with B = lora_B (m, r), A = lora_A (r, n); others may add theirs
BA_SHAPED: set[type] = set()


@dataclass
class FactorPair:
    """One adapted layer's factors: ΔW = s·B·A, A (r, n), B (m, r)."""

    layer: str
    a: nn.Parameter
    b: nn.Parameter
    scale: float


def factor_pairs(model: nn.Module, rule: str) -> list[FactorPair]:
    """Every active, trainable adapter with ΔW = s·B·A under the additive wrapper.

    Raises:
        ConfigError: when there is none (the rule would silently do nothing).
    """
    from ..adapters.lora import LoRA
    from ..core.api import hosts

    shaped = BA_SHAPED | {LoRA}
    pairs = []
    for layer, _, host in hosts(model):
        for n in host.active:
            adapter = host[n]
            d = adapter.delta
            if type(d) in shaped and type(adapter.wrapper) is Wrapper and d.lora_A.requires_grad:
                pairs.append(FactorPair(layer, d.lora_A, d.lora_B, d.scale))
    if not pairs:
        raise ConfigError(f"{rule} needs active LoRA adapters with ΔW = s·B·A (parameterisation 'lora', no DoRA); "
                          "the model has none")
    return pairs


def ridge_eye(k: int, ridge: float, like: torch.Tensor) -> torch.Tensor:
    return ridge * torch.eye(k, dtype=like.dtype, device=like.device)
