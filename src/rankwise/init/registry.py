"""Name → initialiser registry, read by configs and (later) the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

# fn(delta, w0 (m, n) fp32, options) -> True if ΔW₀ must be subtracted from W0
InitFn = Callable[..., bool]


@dataclass(frozen=True)
class Initialiser:
    """A registered initialiser: its function, paper, and whether it moves W0 or needs an SVD."""

    name: str
    fn: InitFn
    paper: str
    moves_base: bool  # True: subtracts ΔW₀ from W0 (saved as a rank-2r plain LoRA for PEFT)
    needs_svd: bool = False
    options: dict = field(default_factory=dict)  # {option: default} read from LoRAConfig.options


INITIALISERS: dict[str, Initialiser] = {}


def register_initialiser(name: str, paper: str, moves_base: bool = False, needs_svd: bool = False,
                         options: dict | None = None):
    """Decorator: register ``fn`` under ``name``; ``options`` declares its ``LoRAConfig.options`` defaults."""

    def deco(fn: InitFn) -> InitFn:
        INITIALISERS[name] = Initialiser(name, fn, paper, moves_base, needs_svd, dict(options or {}))
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
