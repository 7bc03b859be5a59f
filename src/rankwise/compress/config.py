"""CompressConfig: the typed settings of one compression run (the catalogue's presets build these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from .allocate import ALLOCATIONS, check_ratio
from .decompose import DECOMPOSITIONS


@dataclass
class CompressConfig:
    """How to compress a model.

    Args:
        method: the decomposition: ``"svd"``, ``"fwsvd"``, ``"asvd"`` or ``"svd-llm"``.
        ratio: the fraction of the chosen layers' weight parameters removed (0.4 keeps 60%); a layer
            at rank k keeps k·(m + n) of its m·n weights, biases are not counted.
        allocation: ``"uniform"``, ``"energy"``, ``"welore"`` or ``"sensitivity"`` (see ``allocate``).
        targets: which layers — same rules as adapters (``"all-linear"``: every Linear / HF Conv1D but
            the output head; names, suffixes, regexes, module types).
        exclude: names/suffixes/regexes never compressed.
        damping: SVD-LLM's ridge λ relative to the mean input variance (0 = exact, raises on a singular
            covariance instead of falling back to more damping).
        asvd_alpha: ASVD's exponent α on the mean absolute activation.
        sensitivity_batches: calibration batches used to measure loss increases (sensitivity allocation).
        sensitivity_fractions: the kept fractions of m·n tried per layer by the sensitivity allocation.
    """

    method: str = "svd"
    ratio: float = 0.4
    allocation: str = "uniform"
    targets: Any = "all-linear"
    exclude: Sequence[str] = ()
    damping: float = 1e-4
    asvd_alpha: float = 0.5
    sensitivity_batches: int = 2
    sensitivity_fractions: tuple[float, ...] = field(default=(0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1))

    def __post_init__(self) -> None:
        if self.method not in DECOMPOSITIONS:
            raise ConfigError(f"unknown decomposition method {self.method!r}; choose one of {DECOMPOSITIONS} "
                              "(or the catalogue name 'welore')")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"unknown allocation {self.allocation!r}; choose one of {ALLOCATIONS}")
        check_ratio(self.ratio)
        if self.damping < 0:
            raise ConfigError(f"damping must be ≥ 0, got {self.damping}")
        if self.asvd_alpha <= 0:
            raise ConfigError(f"asvd_alpha must be > 0, got {self.asvd_alpha}")
        if self.sensitivity_batches < 1:
            raise ConfigError(f"sensitivity_batches must be ≥ 1, got {self.sensitivity_batches}")
        if not self.sensitivity_fractions or not all(0 < f < 1 for f in self.sensitivity_fractions):
            raise ConfigError("sensitivity_fractions must be kept fractions in (0, 1), "
                              f"got {self.sensitivity_fractions}")
        self.exclude = tuple(self.exclude)
        self.sensitivity_fractions = tuple(self.sensitivity_fractions)

    @property
    def needs_calibration(self) -> bool:
        """Whether planning reads calibration batches."""
        return self.method != "svd" or self.allocation == "sensitivity"

    @property
    def needs_gradients(self) -> bool:
        """Whether the calibration pass runs backward (FWSVD's Fisher rows)."""
        return self.method == "fwsvd"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(d["targets"], str | list | tuple):
            d["targets"] = repr(d["targets"])
        d["exclude"] = list(d["exclude"])
        d["sensitivity_fractions"] = list(d["sensitivity_fractions"])
        return d
