"""Rank allocation: how many singular directions each layer keeps under one parameter budget.

**Ratio** (the one definition rankwise uses): the fraction of the chosen layers' weight parameters
that compression removes, ``ratio = 1 − kept / Σ m·n``. A layer kept at rank k stores k·(m + n)
weights; a layer left dense stores m·n. Biases are kept as they are and not counted. Every allocation
returns ranks whose kept total is ≤ ``(1 − ratio)·Σ m·n``, so the achieved ratio is ≥ the requested one.

Allocations (rank ``None`` = the layer stays dense):

* ``uniform`` — every layer removes the same fraction: k = ⌊(1 − ratio)·m·n / (m + n)⌋ (SVD-LLM's rule).
* ``energy`` — one global energy level e: each layer keeps the fewest directions holding a fraction e
  of its Σσ²; e is the largest level that fits the budget (bisection).
* ``welore`` — WeLore's rule ("From GaLore to WeLore", arXiv 2407.11239): normalise each layer's
  singular values s̃ = (σ − min)/(max − min) and keep the directions with s̃ ≥ τ; layers where that
  does not save parameters stay dense (WeLore's non-compressible matrices); τ is the smallest
  threshold that fits the budget (bisection).
* ``sensitivity`` — from measured loss increases: each layer picks, among candidate ranks, the
  cheapest whose calibration-loss increase is ≤ t; t is the smallest level that fits the budget
  (binary search over the measured increases; ASVD's sensitivity-based rank search, arXiv 2312.05821).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import ConfigError

ALLOCATIONS = ("uniform", "energy", "welore", "sensitivity")
Shape = tuple[int, int]  # (m, n) = (out, in)


def kept_params(shape: Shape, rank: int | None) -> int:
    """Weights stored for a layer: k·(m + n) at rank k, m·n when dense (rank None)."""
    m, n = shape
    return m * n if rank is None else rank * (m + n)


def budget(shapes: Sequence[Shape], ratio: float) -> int:
    """The most weights the chosen layers may keep: ⌊(1 − ratio)·Σ m·n⌋."""
    check_ratio(ratio)
    return math.floor((1 - ratio) * sum(m * n for m, n in shapes))


def achieved_ratio(shapes: Sequence[Shape], ranks: Sequence[int | None]) -> float:
    """1 − kept / Σ m·n for the given ranks."""
    total = sum(m * n for m, n in shapes)
    return 1 - sum(kept_params(s, k) for s, k in zip(shapes, ranks, strict=True)) / total


def check_ratio(ratio: float) -> None:
    if not 0 < ratio < 1:
        raise ConfigError(f"ratio is the fraction of the chosen layers' parameters removed and must be in (0, 1), "
                          f"got {ratio}")


def _worthwhile(shape: Shape, k: int) -> int | None:
    """k, or None (dense) when rank k would not store fewer weights than the dense layer."""
    m, n = shape
    return None if k * (m + n) >= m * n else k


def uniform(shapes: Sequence[Shape], ratio: float) -> list[int | None]:
    """k = ⌊(1 − ratio)·m·n/(m + n)⌋ per layer (at least 1)."""
    check_ratio(ratio)
    ranks = []
    for m, n in shapes:
        k = math.floor((1 - ratio) * m * n / (m + n))
        if k < 1:
            raise ConfigError(f"ratio {ratio} leaves a {m}×{n} layer less than rank 1; lower the ratio")
        ranks.append(k)
    return ranks


def _fit(ranks_at, shapes: Sequence[Shape], ratio: float, lo: float, hi: float, larger_keeps_more: bool,
         what: str) -> list[int | None]:
    """Bisection on a scalar level so that the kept total fits the budget."""
    cap = budget(shapes, ratio)

    def total(level: float) -> int:
        return sum(kept_params(s, k) for s, k in zip(shapes, ranks_at(level), strict=True))

    tight = lo if larger_keeps_more else hi
    if total(tight) > cap:
        raise ConfigError(f"ratio {ratio} is out of reach for {what} allocation even at rank 1 everywhere; "
                          "lower the ratio")
    for _ in range(60):
        mid = (lo + hi) / 2
        fits = total(mid) <= cap
        if larger_keeps_more:
            lo, hi = (mid, hi) if fits else (lo, mid)
        else:
            lo, hi = (lo, mid) if fits else (mid, hi)
    return ranks_at(lo if larger_keeps_more else hi)


def energy_ranks(sigmas: Sequence[torch.Tensor], shapes: Sequence[Shape], level: float) -> list[int | None]:
    """Fewest directions keeping a fraction ``level`` of Σσ² per layer (≥ 1; dense if not worthwhile)."""
    out = []
    for s, shape in zip(sigmas, shapes, strict=True):
        e = s.to(torch.float64).pow(2)
        cum = e.cumsum(0) / e.sum().clamp_min(1e-300)
        k = int((cum < level - 1e-12).sum()) + 1
        out.append(_worthwhile(shape, min(k, len(s))))
    return out


def energy(sigmas: Sequence[torch.Tensor], shapes: Sequence[Shape], ratio: float) -> list[int | None]:
    """One global energy level, the largest that fits the budget."""
    return _fit(lambda e: energy_ranks(sigmas, shapes, e), shapes, ratio, 0.0, 1.0, True, "energy")


def welore_ranks(sigmas: Sequence[torch.Tensor], shapes: Sequence[Shape], tau: float) -> list[int | None]:
    """Directions with normalised singular value s̃ = (σ − min)/(max − min) ≥ τ; dense if not worthwhile."""
    out = []
    for s, shape in zip(sigmas, shapes, strict=True):
        s = s.to(torch.float64)
        span = float(s.max() - s.min())
        norm = (s - s.min()) / span if span > 0 else torch.ones_like(s)
        k = max(int((norm >= tau).sum()), 1)
        out.append(_worthwhile(shape, k))
    return out


def welore(sigmas: Sequence[torch.Tensor], shapes: Sequence[Shape], ratio: float) -> list[int | None]:
    """WeLore with the smallest threshold τ that fits the budget."""
    return _fit(lambda t: welore_ranks(sigmas, shapes, t), shapes, ratio, 0.0, 1.0, False, "welore")


def sensitivity(candidates: Sequence[Sequence[tuple[int, float]]], shapes: Sequence[Shape],
                ratio: float) -> list[int | None]:
    """Cheapest candidate per layer whose loss increase is ≤ t, for the smallest t that fits the budget.

    Args:
        candidates: per layer, (rank, measured calibration-loss increase) pairs; staying dense
            (increase 0) is always a candidate.
        shapes: per layer (m, n).
        ratio: fraction of parameters to remove.
    """
    cap = budget(shapes, ratio)

    def choose(t: float) -> list[int | None]:
        out = []
        for cands, shape in zip(candidates, shapes, strict=True):
            best: int | None = None
            for k, d in cands:
                if d <= t and kept_params(shape, k) < kept_params(shape, best):
                    best = k
            out.append(best)
        return out

    def total(t: float) -> int:
        return sum(kept_params(s, k) for s, k in zip(shapes, choose(t), strict=True))

    levels = sorted({0.0, *(d for cands in candidates for _, d in cands)})
    if total(levels[-1]) > cap:
        raise ConfigError(f"ratio {ratio} is out of reach for sensitivity allocation with the candidate ranks; "
                          "lower the ratio")
    lo, hi = 0, len(levels) - 1  # smallest index whose level fits
    while lo < hi:
        mid = (lo + hi) // 2
        if total(levels[mid]) <= cap:
            hi = mid
        else:
            lo = mid + 1
    return choose(levels[lo])
