"""Gradient rules and optimizer helpers."""

from . import allora, altlora, lora_pro  # noqa: F401  (declare their LoRAConfig.options)
from .allora import ALLoRARule
from .altlora import AltLoRARule
from .lora_pro import LoRAProRule, lora_pro_grads
from .param_groups import param_groups
from .scheduled import ALLoRA, AltLoRA, LoRAPro, ScheduledOptimizer

__all__ = ["param_groups", "LoRAPro", "AltLoRA", "ALLoRA", "ScheduledOptimizer", "LoRAProRule", "AltLoRARule",
           "ALLoRARule", "lora_pro_grads"]
