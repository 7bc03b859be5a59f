"""Sparse fine-tuning of the base weights themselves (LIFT) and its sparse-state optimizer."""

from .lift import LIFTConfig, LIFTSchedule, lift, load_lift, principal_mask_indices, save_lift
from .lift_adamw import LIFTAdamW

__all__ = ["LIFTConfig", "LIFTSchedule", "LIFTAdamW", "lift", "save_lift", "load_lift", "principal_mask_indices"]
