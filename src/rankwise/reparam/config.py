"""One typed config for every reparameterised-pretraining method.

Each method reads the fields it needs (listed in the field docs); the others keep their defaults and
are ignored, so ``rankwise.method_config("sltrain", rank=32, density=0.05)`` and the CLI share one
type. ``validate`` checks every field before anything touches the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

METHODS = ("low-rank", "relora", "switchlora", "sltrain", "lost", "cola", "sst")
PRUNE_MODES = ("reset", "random", "magnitude")
ACTIVATIONS = ("silu", "gelu", "relu", "tanh", "identity")


@dataclass
class ReparamConfig:
    """How to reparameterise a model's linear layers for low-rank pretraining.

    Args:
        method: one of ``"low-rank"``, ``"relora"``, ``"switchlora"``, ``"sltrain"``, ``"lost"``,
            ``"cola"``, ``"sst"``.
        rank: r, the rank of each factored layer (capped per layer at ``min(m, n)``); for SST, the
            number of singular-vector pairs trained per round.
        alpha: the factor product is scaled by s = α/r; None means s = 1 (α = r).
        targets: layers to reparameterise, as in ``LoRAConfig.targets`` (``"all-linear"``: every
            ``nn.Linear`` except the output head, i.e. the attention and MLP projections of a transformer).
        exclude: names, suffixes or regexes never to reparameterise.
        seed: seeds every random choice (sparse supports, restarts, switches, samples).
        density: SLTrain, δ: fraction of each W's entries in the trained sparse part.
        gamma: LOST, γ: W = γ·B·A + (1−γ)·S, the mix of low-rank and channel-sparse parts.
        channel_fraction: LOST, fraction of input channels (columns) kept in the sparse part.
        activation: CoLA, σ in y = B·σ(A·x).
        recompute: CoLA-M: recompute σ(A·x) in backward instead of storing it.
        restart_every: ReLoRA, K: merge and restart every K steps; SST: re-SVD every K steps.
        restart_warmup: ReLoRA, steps of linear LR re-warmup after each restart (jagged schedule).
        prune: ReLoRA, what happens to the factors' optimizer state at a restart: ``"reset"``
            (zero), ``"random"`` (zero a random ``prune_fraction`` of entries) or ``"magnitude"``
            (zero the ``prune_fraction`` smallest-magnitude entries), as the ReLoRA paper.
        prune_fraction: fraction of optimizer-state entries zeroed by random/magnitude pruning.
        switch_every: SwitchLoRA, initial mean steps between switches of one vector (interval₀).
        switch_decay_steps: SwitchLoRA, step at which the switch frequency has fallen to a third.
        freeze_steps: SwitchLoRA, steps a switched vector's counterpart stays frozen.
        num_candidates: SwitchLoRA, stored candidate vectors per factor (None: r).
        sample_every: SST, steps between resampling the trained singular-vector pairs.
        refactor_every: weight refactorisation + momentum reset (any linear factored method): every
            this many steps re-balance B·A by SVD and reset the factors' optimizer state. None: off.
        refactor_warmup: steps of linear LR ramp after each refactorisation.
    """

    method: str = "low-rank"
    rank: int = 32
    alpha: float | None = None
    targets: str | type | Sequence[Any] = "all-linear"
    exclude: Sequence[str] = ()
    seed: int = 0
    density: float = 0.03
    gamma: float = 0.5
    channel_fraction: float = 0.05
    activation: str = "silu"
    recompute: bool = False
    restart_every: int = 200
    restart_warmup: int = 10
    prune: str = "magnitude"
    prune_fraction: float = 0.999
    switch_every: int = 40
    switch_decay_steps: int = 1000
    freeze_steps: int = 5
    num_candidates: int | None = None
    sample_every: int = 50
    refactor_every: int | None = None
    refactor_warmup: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.exclude, str):
            self.exclude = (self.exclude,)
        self.exclude = tuple(self.exclude)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and the fix."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown reparameterisation method {self.method!r}; choose one of {METHODS}")
        for name in ("rank", "restart_every", "switch_every", "switch_decay_steps", "sample_every"):
            _positive_int(name, getattr(self, name))
        for name in ("restart_warmup", "freeze_steps", "refactor_warmup", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an int ≥ 0, got {v!r}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float)
                                       or not math.isfinite(self.alpha) or self.alpha <= 0):
            raise ConfigError(f"alpha must be a positive number or None (scale 1), got {self.alpha!r}")
        _fraction("density", self.density, open_low=True)
        _fraction("channel_fraction", self.channel_fraction, open_low=True)
        _fraction("prune_fraction", self.prune_fraction)
        _fraction("gamma", self.gamma, open_low=True, open_high=True)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.prune not in PRUNE_MODES:
            raise ConfigError(f"prune must be one of {PRUNE_MODES}, got {self.prune!r}")
        if self.num_candidates is not None:
            _positive_int("num_candidates", self.num_candidates)
        if self.refactor_every is not None:
            _positive_int("refactor_every", self.refactor_every)
            if self.method in ("cola", "sst"):
                raise ConfigError(f"refactor_every does not apply to method={self.method!r} (CoLA's σ makes B·A "
                                  "non-linear; SST already re-SVDs via restart_every); leave refactor_every=None")
        if not isinstance(self.recompute, bool):
            raise ConfigError(f"recompute must be a bool, got {self.recompute!r}")

    def scale(self, rank: int) -> float:
        """s = α/r (1 when alpha is None)."""
        return 1.0 if self.alpha is None else self.alpha / rank

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (module-type targets as ``module:QualName``)."""
        d = asdict(self)
        enc = lambda t: t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"  # noqa: E731
        d["targets"] = [enc(t) for t in self.targets] if isinstance(self.targets, list | tuple) else enc(self.targets)
        d["exclude"] = list(self.exclude)
        return d


def _positive_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(f"{name} must be a positive int, got {v!r}")


def _fraction(name: str, v: Any, open_low: bool = False, open_high: bool = False) -> None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > 0 if open_low else v >= 0) and (v < 1 if open_high else v <= 1)
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"{name} must be in {lo}0, 1{hi}, got {v!r}")
