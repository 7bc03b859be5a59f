"""Plan: per-layer ranks, kept parameters and predicted errors, printable as a table.

**Ratio** = the fraction of the chosen layers' weight parameters removed: ``1 − kept / Σ m·n``
(rank k keeps k·(m + n) weights of an m×n layer; a dense layer keeps m·n; biases are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .decompose import Spectrum


@dataclass
class LayerPlan:
    """One layer of a plan.

    Attributes:
        name: the module's full name.
        shape: (m, n) = (out, in).
        rank: kept rank k, or None when the layer stays dense.
        params: m·n, the dense weight count.
        kept: weights kept: k·(m + n), or m·n when dense.
        predicted_error: relative error ‖σ_{k+1:}‖/‖σ‖ in the method's metric (weight error for SVD,
            Fisher-weighted for FWSVD, activation-scaled for ASVD, activation error for SVD-LLM); 0 when dense.
        spectrum: the decomposition (for apply and analysis; not printed or saved).
    """

    name: str
    shape: tuple[int, int]
    rank: int | None
    params: int
    kept: int
    predicted_error: float
    spectrum: Spectrum | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "rank": self.rank, "params": self.params,
                "kept": self.kept, "predicted_error": self.predicted_error}


@dataclass
class Plan:
    """What :func:`rankwise.compress.apply` will do.

    Attributes:
        method: the decomposition (``"svd"``, ``"fwsvd"``, ``"asvd"``, ``"svd-llm"``).
        allocation: how ranks were chosen.
        requested_ratio: the ratio asked for (fraction of the chosen layers' parameters removed).
        layers: one :class:`LayerPlan` per chosen layer, in model order.
        config: the CompressConfig as a dict (recorded in saved folders).
        sensitivities: per layer, the measured (rank, loss increase) pairs of a sensitivity allocation
            (reused by ``plan(..., reuse=)``), else None.
    """

    method: str
    allocation: str
    requested_ratio: float
    layers: list[LayerPlan]
    config: dict[str, Any] = field(default_factory=dict)
    sensitivities: dict[str, list[tuple[int, float]]] | None = field(default=None, repr=False)

    @property
    def params(self) -> int:
        """Σ m·n over the chosen layers."""
        return sum(x.params for x in self.layers)

    @property
    def kept(self) -> int:
        """Weights kept over the chosen layers."""
        return sum(x.kept for x in self.layers)

    @property
    def ratio(self) -> float:
        """Achieved ratio: 1 − kept/params (≥ requested_ratio)."""
        return 1 - self.kept / self.params if self.params else 0.0

    @property
    def ranks(self) -> dict[str, int | None]:
        return {x.name: x.rank for x in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "allocation": self.allocation, "requested_ratio": self.requested_ratio,
                "ratio": self.ratio, "params": self.params, "kept": self.kept, "config": self.config,
                "layers": [x.to_dict() for x in self.layers]}

    def __str__(self) -> str:
        header = ("layer", "shape", "rank", "params kept", "predicted error")
        rows = [(x.name, f"{x.shape[0]}×{x.shape[1]}", "dense" if x.rank is None else str(x.rank),
                 f"{x.kept:,} / {x.params:,}", f"{x.predicted_error:.4f}") for x in self.layers]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else map(len, header)
        widths = list(widths)

        def line(cells) -> str:
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

        out = [f"compression plan: method={self.method}, allocation={self.allocation}",
               line(header), line(["-" * w for w in widths]), *(line(r) for r in rows),
               f"ratio (fraction of the chosen layers' parameters removed): requested {self.requested_ratio:.3f}, "
               f"achieved {self.ratio:.3f}; kept {self.kept:,} of {self.params:,} weights in {len(self.layers)} layers",
               "predicted error: relative ‖dropped σ‖/‖σ‖ in the method's metric"]
        return "\n".join(out)
