"""Parameterisations of ΔW (one file each) and wrappers that combine ΔW with W0."""

from . import (
    catalogue,  # noqa: F401  (registers the LoRA-family methods)
    catalogue_calibrated,  # noqa: F401  (data-driven inits, LoRA-XS and the r×r-core shape)
    catalogue_structured,  # noqa: F401  (VeRA, NOLA, RandLoRA, SVFit, SVFT, LoLDU, QR-LoRA, MoRA, HRA, …)
)
from .bca import CoreLoRA, LoRAXS
from .dora import DoRA
from .lora import LoRA

__all__ = ["LoRA", "DoRA", "CoreLoRA", "LoRAXS"]
