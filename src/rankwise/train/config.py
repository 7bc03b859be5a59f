"""The training loop's settings, as a typed dataclass the CLI's configs extend.

Every field carries its help text (and allowed values or range) in its metadata, which the CLI
turns into ``--help`` and into error messages naming the field and what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from .lr import SHAPES


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with ``help`` and optional ``choices`` / ``min`` / ``gt`` / ``lt`` checks."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def check_fields(obj: Any) -> None:
    """Check every field's declared ``choices`` and range; raise ConfigError naming the field."""
    for f in fields(obj):
        v, meta = getattr(obj, f.name), f.metadata
        if v is None:
            continue
        if "choices" in meta and v not in meta["choices"]:
            raise ConfigError(f"{f.name}={v!r} is not allowed; choose one of {list(meta['choices'])}")
        if "min" in meta and v < meta["min"]:
            raise ConfigError(f"{f.name}={v!r} must be ≥ {meta['min']}")
        if "gt" in meta and not v > meta["gt"]:
            raise ConfigError(f"{f.name}={v!r} must be > {meta['gt']}")
        if "lt" in meta and not v < meta["lt"]:
            raise ConfigError(f"{f.name}={v!r} must be < {meta['lt']}")


@dataclass
class TrainConfig:
    """Settings of the one training loop (``rankwise.train.train``)."""

    steps: int = setting(200, "optimizer steps (each one sums grad_accum micro-batches)", min=1)
    lr: float = setting(1e-3, "peak learning rate", gt=0)
    weight_decay: float = setting(0.0, "AdamW weight decay", min=0)
    warmup: float = setting(0.1, "fraction of the steps spent in linear warmup", min=0, lt=1)
    lr_schedule: str = setting("cosine", "learning-rate decay after warmup", choices=SHAPES)
    min_lr_ratio: float = setting(0.1, "final learning rate as a fraction of the peak", min=0)
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step", min=1)
    clip: float = setting(1.0, "gradient-norm clipping threshold (0: no clipping)", min=0)
    eval_every: int = setting(100, "evaluate every N steps (0: only at the end)", min=0)
    eval_batches: int = setting(20, "at most this many validation batches per evaluation", min=1)
    save_every: int = setting(0, "checkpoint every N steps (0: at every evaluation)", min=0)
    log_every: int = setting(10, "write a training-metrics row every N steps", min=1)
    seed: int = setting(0, "seed for the model, the data order and dropout")
    progress: bool = setting(True, "show a progress bar (loss, tokens/s, ETA)")

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        check_fields(self)
