"""Name → initialiser registry, read by configs and (later) the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError

# fn(delta, w0 (m, n) fp32, niter=, calibration=, config=) -> True if ΔW₀ must be subtracted from W0
InitFn = Callable[..., bool]
COLLECTS = (None, "gradient", "inputs", "inputs-normalised")


@dataclass(frozen=True)
class Initialiser:
    """A registered initialiser: its function, paper, and whether it moves W0 or needs an SVD.

    Data-driven initialisers also say what they read from the calibration batches (``collects``):
    ``"gradient"`` (mean ∂L/∂W0 per layer), ``"inputs"`` (streamed statistics of each layer's input)
    or ``"inputs-normalised"`` (the same, each sample scaled by its max, as CorDA does). Their
    per-layer ``fn`` then receives the layer's statistic as ``calibration=``. ``prepare``, if set,
    runs once over all layers before the per-layer calls: ``prepare(plans, stats, config) -> plans``
    (EVA redistributes ranks there and drops layers that get rank 0).
    """

    name: str
    fn: InitFn
    paper: str
    moves_base: bool  # True: subtracts ΔW₀ from W0 (saved as a rank-2r plain LoRA for PEFT)
    needs_svd: bool = False
    options: dict = field(default_factory=dict)  # {option: default} read from LoRAConfig.options
    collects: str | None = None  # None | "gradient" | "inputs" | "inputs-normalised"
    prepare: Callable[..., Any] | None = None

    @property
    def needs_calibration(self) -> bool:
        """True when the initialiser reads calibration batches (``rankwise.adapt(..., calibration=...)``)."""
        return self.collects is not None


INITIALISERS: dict[str, Initialiser] = {}


def register_initialiser(name: str, paper: str, moves_base: bool = False, needs_svd: bool = False,
                         options: dict | None = None, collects: str | None = None,
                         prepare: Callable[..., Any] | None = None):
    """Decorator: register ``fn`` under ``name``; ``options`` declares its ``LoRAConfig.options`` defaults.

    ``collects`` (see :class:`Initialiser`) marks a data-driven initialiser; it gets the option
    ``calibration_batches`` (how many batches to read; None: all) declared automatically.
    """
    if collects not in COLLECTS:
        raise ValueError(f"collects must be one of {COLLECTS}, got {collects!r}")
    options = dict(options or {})
    if collects is not None:
        options.setdefault("calibration_batches", None)

    def deco(fn: InitFn) -> InitFn:
        INITIALISERS[name] = Initialiser(name, fn, paper, moves_base, needs_svd, options, collects, prepare)
        return fn

    return deco


def get_initialiser(name: str) -> Initialiser:
    """Look up ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in INITIALISERS:
        raise ConfigError(f"unknown init {name!r}; choose one of {sorted(INITIALISERS)}")
    return INITIALISERS[name]


def fp32_svd(w: torch.Tensor, rank: int, niter: int | None, oversample: int = 8):
    """Top-``rank`` SVD of w in fp32: exact (``torch.linalg.svd``) or randomized (``torch.svd_lowrank``).

    Returns U (m, k), S (k,), Vh (k, n) with k = rank, largest first. The randomized path draws
    ``rank + oversample`` columns (Halko, Martinsson & Tropp, arXiv 0909.4061) and ``niter`` power
    iterations, then truncates, which keeps the rank-r error close to the exact SVD's.
    """
    w = w.float()
    if niter is None:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return u[:, :rank], s[:rank], vh[:rank]
    q = min(rank + oversample, min(w.shape))
    u, s, v = torch.svd_lowrank(w, q=q, niter=niter)
    return u[:, :rank], s[:rank], v[:, :rank].t()
