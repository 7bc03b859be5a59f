"""Sparse fine-tuning of the base weights themselves (LIFT)."""

from .lift import LIFTConfig, LIFTSchedule, lift, load_lift, principal_mask_indices, save_lift

__all__ = ["LIFTConfig", "LIFTSchedule", "lift", "save_lift", "load_lift", "principal_mask_indices"]
