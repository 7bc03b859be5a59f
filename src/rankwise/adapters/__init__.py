"""Parameterisations of ΔW (one file each) and wrappers that combine ΔW with W0."""

from . import (
    catalogue,  # noqa: F401  (registers the LoRA-family methods)
    catalogue_adaptive,  # noqa: F401  (gradient rules and rank-adaptive methods)
    catalogue_calibrated,  # noqa: F401  (data-driven inits, LoRA-XS and the r×r-core shape)
    catalogue_structured,  # noqa: F401  (VeRA, NOLA, RandLoRA, SVFit, SVFT, LoLDU, QR-LoRA, MoRA, HRA, …)
)
from .adalora import AdaLoRA
from .bca import CoreLoRA, LoRAXS
from .dora import DoRA
from .dylora import DyLoRA, set_rank
from .lora import LoRA
from .sora import SoRA, prune_gates

__all__ = ["LoRA", "DoRA", "CoreLoRA", "LoRAXS", "AdaLoRA", "SoRA", "DyLoRA", "set_rank", "prune_gates"]
