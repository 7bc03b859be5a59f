"""The method catalogue: every named method, its paper, and the config preset it stands for.

A *method* in rankwise is not a class: it is a named preset of axis values (parameterisation,
wrapper, initialiser, gradient rule, rank schedule for adapters; projector and update rule for
optimizers; a reparameterisation for pretraining; a decomposition for compression). Each package
registers its methods here when it is imported, so ``rankwise.methods()`` lists them all and
``rankwise.method_config(name, **overrides)`` builds the typed config the CLI and Python share.

    rankwise.methods()                                      # [Method(name='lora', ...), ...]
    cfg = rankwise.method_config("dora", rank=16)           # LoRAConfig(dora=True, rank=16, ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

FAMILIES = ("adapter", "optimizer", "reparam", "compress")


@dataclass(frozen=True)
class Method:
    """One catalogue entry.

    Attributes:
        name: the name used in configs and on the command line (lower case, ``-`` separated).
        family: ``"adapter"``, ``"optimizer"``, ``"reparam"`` or ``"compress"``.
        paper: title and arXiv id of the paper the method comes from.
        make_config: ``(**overrides) -> config``: the preset, with user overrides applied.
        formula: the method's update or parameterisation in one line.
        trainable: trainable-parameter (or state) count per m×n layer, as a formula.
        mergeable: whether the learned update folds into W (None: not applicable).
        peft: whether Hugging Face PEFT has the method (files convert both ways).
        schedule: for methods that act during training (rank schedules, gradient rules,
            restarts): ``(model, config, total_steps) -> rankwise.schedule.TrainingSchedule``,
            called after the method is applied; None for methods with nothing to do per step.
        needs_calibration: whether applying the method reads calibration batches.
        apply: for an ``adapter``-family method that ``rankwise.adapt`` does not apply:
            ``(model, config, calibration) -> None`` (calibration: a list of batches or None);
            None: ``rankwise.adapt``.
        optimizer: ``(model, config, schedule, lr=, weight_decay=) -> torch.optim.Optimizer``, called
            after ``schedule``, for a method that needs its own optimizer (LoRA-Pro's AdamW and AltLoRA,
            whose update rule is an optimizer); None: AdamW over
            ``rankwise.param_groups(model)``.
        save: ``(model, schedule, folder) -> None``: how a trained run is saved; None:
            ``rankwise.save_adapter(model, folder)``.
        load: ``(model, folder) -> model``: puts what ``save`` wrote onto a base model; None:
            ``rankwise.load_adapter(model, folder)``.
    """

    name: str
    family: str
    paper: str
    make_config: Callable[..., Any] = field(repr=False)
    formula: str = ""
    trainable: str = ""
    mergeable: bool | None = None
    peft: bool = False
    schedule: Callable[..., Any] | None = field(default=None, repr=False)
    needs_calibration: bool = False
    apply: Callable[..., Any] | None = field(default=None, repr=False)
    optimizer: Callable[..., Any] | None = field(default=None, repr=False)
    save: Callable[..., Any] | None = field(default=None, repr=False)
    load: Callable[..., Any] | None = field(default=None, repr=False)


METHODS: dict[str, Method] = {}


def register_method(name: str, family: str, paper: str, make_config: Callable[..., Any], *, formula: str = "",
                    trainable: str = "", mergeable: bool | None = None, peft: bool = False,
                    schedule: Callable[..., Any] | None = None, needs_calibration: bool = False,
                    apply: Callable[..., Any] | None = None, optimizer: Callable[..., Any] | None = None,
                    save: Callable[..., Any] | None = None, load: Callable[..., Any] | None = None) -> Method:
    """Add a method to the catalogue (called by each package at import). Names must be unique."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if name in METHODS:
        raise ValueError(f"method {name!r} is registered twice")
    METHODS[name] = Method(name, family, paper, make_config, formula, trainable, mergeable, peft, schedule,
                           needs_calibration, apply, optimizer, save, load)
    return METHODS[name]


def methods(family: str | None = None) -> list[Method]:
    """Every registered method (of one ``family`` if given), in registration order."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; choose one of {FAMILIES}")
    return [m for m in METHODS.values() if family is None or m.family == family]


def get_method(name: str) -> Method:
    """Look up ``name``; unknown names raise ConfigError listing close and known names."""
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(name, list(METHODS), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known methods: {sorted(METHODS)}")
    return METHODS[name]


def method_config(name: str, **overrides: Any) -> Any:
    """The typed config for method ``name`` with ``overrides`` applied (unknown fields are rejected)."""
    method = get_method(name)
    try:
        return method.make_config(**overrides)
    except TypeError as e:  # an unknown keyword from the dataclass constructor
        raise ConfigError(f"method {name!r}: {e}") from e
