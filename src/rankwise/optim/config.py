"""The typed config of the optimizer family: one dataclass for AdamW, GaLore, Fira, APOLLO and APOLLO-Mini.

    cfg = rankwise.method_config("galore", rank=128, projector="rsvd")
    opt = rankwise.optim.build_optimizer(model, cfg, lr=1e-2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .lowrank import MOMENTS
from .projectors import DISTRIBUTIONS, PROJECTORS

OPTIMIZERS = ("adamw", "galore", "fira", "apollo", "apollo-mini")


@dataclass
class LowRankConfig:
    """Optimizer config (the ``"optimizer"`` family of the method catalogue).

    Args:
        optimizer: ``"adamw"`` (plain ``torch.optim.AdamW``, every other field ignored), ``"galore"``,
            ``"fira"``, ``"apollo"`` or ``"apollo-mini"``.
        rank: r of the projected gradient (APOLLO-Mini: 1).
        update_gap: steps between projector refreshes (T).
        scale: α; None for the method's default (GaLore/Fira 0.25, APOLLO 1, APOLLO-Mini 128).
        projector: ``"svd"``, ``"rsvd"``, ``"dct"`` or ``"random"``; None for the method's default
            (svd for GaLore/Fira, random for APOLLO).
        niter: power iterations of the randomized SVD.
        random_dist: ``"gaussian"`` or ``"orthonormal"`` for the random projector.
        lazy_refresh, lazy_threshold, lazy_window: Q-GaLore's lazy refresh (see rankwise.optim.lowrank).
        moments: on refresh, ``"keep"``, ``"reset"`` or ``"reproject"`` the Adam moments.
        layerwise: update in post-accumulate-grad hooks (rankwise.optim.layerwise).
        targets, exclude: which layers are projected (None: 2-D weights inside transformer blocks).
        betas, eps: Adam's (eps None: 1e-8 for AdamW, 1e-6 for the low-rank optimizers, as their references).
        seed: base seed of the random/rsvd projectors.
        scale_type: APOLLO's ``"channel"`` / ``"tensor"`` (None: channel for APOLLO, tensor for APOLLO-Mini).
        limiter: Fira/APOLLO norm-growth limit γ.
    """

    optimizer: str = "galore"
    rank: int = 128
    update_gap: int = 200
    scale: float | None = None
    projector: str | None = None
    niter: int = 2
    random_dist: str = "gaussian"
    lazy_refresh: bool = False
    lazy_threshold: float = 0.4
    lazy_window: int = 5
    moments: str = "keep"
    layerwise: bool = False
    targets: Any = None
    exclude: Sequence[str] = ()
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float | None = None
    seed: int = 0
    scale_type: str | None = None
    limiter: float = 1.01

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and the fix."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r} is unknown; choose one of {OPTIMIZERS}")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ConfigError(f"rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.update_gap, int) or self.update_gap < 1:
            raise ConfigError(f"update_gap must be a positive integer number of steps, got {self.update_gap!r}")
        if self.scale is not None and not (isinstance(self.scale, int | float) and math.isfinite(self.scale)
                                           and self.scale > 0):
            raise ConfigError(f"scale must be a positive finite number or None, got {self.scale!r}")
        if self.projector is not None and self.projector not in PROJECTORS:
            raise ConfigError(f"projector={self.projector!r} is unknown; choose one of {sorted(PROJECTORS)}")
        if self.moments not in MOMENTS:
            raise ConfigError(f"moments={self.moments!r} is unknown; choose one of {MOMENTS}")
        if self.random_dist not in DISTRIBUTIONS:
            raise ConfigError(f"random_dist={self.random_dist!r} is unknown; choose one of {DISTRIBUTIONS}")
        if not isinstance(self.niter, int) or self.niter < 0:
            raise ConfigError(f"niter must be an integer ≥ 0, got {self.niter!r}")
        if self.scale_type not in (None, "channel", "tensor"):
            raise ConfigError(f"scale_type must be 'channel', 'tensor' or None, got {self.scale_type!r}")
        if self.scale_type is not None and not self.optimizer.startswith("apollo"):
            raise ConfigError(f"scale_type applies to APOLLO only, not optimizer={self.optimizer!r}")
        if not (isinstance(self.limiter, int | float) and self.limiter >= 1.0):
            raise ConfigError(f"limiter (γ) must be ≥ 1, got {self.limiter!r}")
        if len(tuple(self.betas)) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.layerwise and self.optimizer == "adamw":
            raise ConfigError("layerwise=True needs a rankwise optimizer (galore/fira/apollo/apollo-mini); "
                              "torch.optim.AdamW has no layer-wise mode")
