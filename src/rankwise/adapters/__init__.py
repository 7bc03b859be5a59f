"""Parameterisations of ΔW (one file each) and wrappers that combine ΔW with W0."""

from . import (
    catalogue,  # noqa: F401  (registers the LoRA-family methods)
    catalogue_adaptive,  # noqa: F401  (gradient rules and rank-adaptive methods)
)
from .adalora import AdaLoRA
from .dora import DoRA
from .dylora import DyLoRA, set_rank
from .lora import LoRA
from .sora import SoRA, prune_gates

__all__ = ["LoRA", "DoRA", "AdaLoRA", "SoRA", "DyLoRA", "set_rank", "prune_gates"]
