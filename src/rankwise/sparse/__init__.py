"""Sparse fine-tuning of the base weights' principal entries (LIFT), trained as a sparse delta on W."""

from .lift import LIFTConfig, LIFTSchedule, SparseDelta, lift, load_lift, principal_mask_indices, save_lift

__all__ = ["LIFTConfig", "LIFTSchedule", "SparseDelta", "lift", "save_lift", "load_lift", "principal_mask_indices"]
