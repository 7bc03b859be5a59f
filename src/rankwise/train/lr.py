"""Learning-rate shape: linear warmup, then cosine or linear decay to a floor (or constant).

    lr(step) = base_lr · warmup_decay(step) · schedule.lr_factor(step)

the second factor being the method's own multiplier (``TrainingSchedule.lr_factor``: ReLoRA's
jagged restarts and the like), so every method composes with the loop's schedule.
"""

from __future__ import annotations

import math

SHAPES = ("cosine", "linear", "constant")


def warmup_decay(step: int, total: int, warmup: float, shape: str = "cosine", min_ratio: float = 0.1) -> float:
    """The multiplier at 0-based optimizer step ``step`` of ``total``.

    Args:
        warmup: fraction of ``total`` spent warming up linearly (step k gets (k+1)/W).
        shape: ``"cosine"`` (half cosine from 1 to ``min_ratio``), ``"linear"`` (straight line to
            ``min_ratio``) or ``"constant"`` (1 after warmup).
        min_ratio: the final multiplier, as a fraction of the peak.
    """
    w = int(round(warmup * total))
    if step < w:
        return (step + 1) / w
    if shape == "constant":
        return 1.0
    p = min(1.0, (step - w) / max(1, total - w))  # progress through the decay, in [0, 1]
    if shape == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    if shape == "linear":
        return min_ratio + (1 - min_ratio) * (1 - p)
    raise ValueError(f"unknown lr shape {shape!r}; choose one of {SHAPES}")
