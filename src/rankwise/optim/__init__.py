"""Gradient rules and optimizer helpers."""

from . import allora, altlora, lora_pro  # noqa: F401  (declare their LoRAConfig.options)
from . import catalogue as _catalogue  # noqa: F401  (registers the optimizer family)
from .adam_core import adam_foreach, adam_reference
from .allora import ALLoRARule
from .altlora import AltLoRARule
from .altlora_optimizer import AltLoRAOptimizer
from .apollo import APOLLO, APOLLOMini
from .build import build_optimizer, state_bytes
from .config import LowRankConfig
from .fira import Fira
from .galore import GaLoreAdamW
from .groups import low_rank_groups
from .lora_pro import LoRAProRule, lora_pro_grads
from .lora_pro_adamw import LoRAProAdamW
from .lowrank import LowRankAdam
from .param_groups import param_groups
from .projectors import PROJECTORS, Projector, get_projector
from .scheduled import ALLoRA, AltLoRA, LoRAPro, ScheduledOptimizer

__all__ = ["param_groups", "GaLoreAdamW", "Fira", "APOLLO", "APOLLOMini", "LowRankAdam", "LowRankConfig",
           "low_rank_groups", "build_optimizer", "state_bytes", "Projector", "PROJECTORS", "get_projector",
           "adam_foreach", "adam_reference", "LoRAPro", "AltLoRA", "ALLoRA", "ScheduledOptimizer", "LoRAProRule",
           "AltLoRARule", "ALLoRARule", "lora_pro_grads", "LoRAProAdamW", "AltLoRAOptimizer"]
