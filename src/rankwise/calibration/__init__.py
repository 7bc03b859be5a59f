"""Calibration: one shared mechanism for data-driven initialisations (LoRA-GA, LoRA-One, LoRA-SB, EVA, CorDA).

    rankwise.adapt(model, rankwise.method_config("lora-ga", rank=8), calibration=batches)
    rankwise.adapt(model, cfg, calibration=loader, loss_fn=lambda out, batch: ...)  # models without .loss
"""

from .batches import batch_loss, call_model, iter_batches
from .collect import InputStats, collect_gradients, collect_inputs, preserved
from .plan import calibrate

__all__ = ["calibrate", "collect_gradients", "collect_inputs", "InputStats", "preserved", "iter_batches",
           "call_model", "batch_loss"]
