"""Typed configs: one dataclass per family, each field one axis choice.

``LoRAConfig`` spans the LoRA family on orthogonal axes — parameterisation (``"lora"``),
wrapper (``dora``), scale (``rslora``), initialisation (``init``), gradient rule (``loraplus_ratio``)
— so "DoRA + PiSSA init + rsLoRA scale + LoRA+ rates" is one config, not a class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from .errors import ConfigError
from .init.registry import get_initialiser

Target = str | type[nn.Module]
Targets = str | type[nn.Module] | Sequence[Target]


@dataclass
class LoRAConfig:
    """LoRA-family adapter config.

    Args:
        rank: r, the rank of ΔW = s·B·A.
        alpha: α; the scale is s = α/r (or α/√r with ``rslora``).
        targets: which layers to adapt — ``"all-linear"`` (every Linear/Conv1D except the output
            head), a module name or name suffix (``"q_proj"``), a regex matched against the full
            module name (``r".*\\.(q|v)_proj"``), a module type (``nn.Linear``), or a list of these.
        exclude: names, suffixes or regexes of modules never to adapt.
        dropout: dropout on the adapter's input (p in [0, 1)).
        rslora: use s = α/√r ("rsLoRA", arXiv 2312.03732).
        dora: wrap ΔW in DoRA's magnitude/direction decomposition (arXiv 2402.09353).
        init: initialiser name: ``"default"`` (Kaiming/zero), ``"gaussian"``, ``"pissa"``,
            ``"milora"``, ``"olora"``. PEFT's ``"pissa_niter_K"`` is accepted too.
        init_niter: randomized-SVD power iterations for SVD inits (None: exact SVD).
        rank_pattern: per-module rank overrides, ``{pattern: rank}``; a pattern matches a module
            whose name ends with it (regex allowed), as in PEFT.
        alpha_pattern: per-module α overrides, same matching.
        loraplus_ratio: LoRA+ (arXiv 2402.12354): lr(B) = ratio·lr(A), used by
            ``rankwise.param_groups``. None: one learning rate.
        parameterisation: the form of ΔW: ``"lora"``, ``"vera"``, ``"hra"``, … (``core.registry``).
        options: method-specific settings (e.g. a random-basis seed), each declared with its
            default by the parameterisation or initialiser that reads it; unknown keys are rejected.
        modules_to_save: names or name suffixes of whole modules trained alongside the adapter
            (e.g. a new classifier head), like PEFT's ``modules_to_save``; saved with the adapter.
            rankwise trains them in place (PEFT trains a copy), so ``unload`` keeps their trained weights.
    """

    rank: int = 8
    alpha: float = 8.0
    targets: Targets = "all-linear"
    exclude: Sequence[str] = ()
    dropout: float = 0.0
    rslora: bool = False
    dora: bool = False
    init: str = "default"
    init_niter: int | None = None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    loraplus_ratio: float | None = None
    parameterisation: str = "lora"
    options: dict[str, Any] = field(default_factory=dict)
    modules_to_save: Sequence[str] = ()

    def __post_init__(self) -> None:
        m = re.fullmatch(r"pissa_niter_(\d+)", str(self.init))
        if m:  # PEFT's spelling
            self.init, self.init_niter = "pissa", int(m.group(1))
        if isinstance(self.exclude, str):
            self.exclude = (self.exclude,)
        self.exclude = tuple(self.exclude)
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = (self.modules_to_save,)
        self.modules_to_save = tuple(self.modules_to_save or ())
        if not isinstance(self.targets, str | type) and isinstance(self.targets, Sequence):
            self.targets = list(self.targets)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        _check_rank("rank", self.rank)
        for pat, r in self.rank_pattern.items():
            _check_rank(f"rank_pattern[{pat!r}]", r)
        for name, a in [("alpha", self.alpha), *((f"alpha_pattern[{p!r}]", a) for p, a in self.alpha_pattern.items())]:
            if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a):
                raise ConfigError(f"{name} must be a finite number, got {a!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        init = get_initialiser(self.init)
        if self.init_niter is not None and (not isinstance(self.init_niter, int) or self.init_niter < 0):
            raise ConfigError(f"init_niter must be None or an int ≥ 0, got {self.init_niter!r}")
        if self.init_niter is not None and not init.needs_svd:
            raise ConfigError(f"init_niter applies to SVD inits only, not init={self.init!r}")
        # deferred: the registry imports the adapters
        from .core.registry import PARAMETERISATION_OPTIONS, PARAMETERISATIONS

        if self.parameterisation not in PARAMETERISATIONS:
            raise ConfigError(f"unknown parameterisation {self.parameterisation!r}; choose one of "
                              f"{sorted(PARAMETERISATIONS)}")
        form = PARAMETERISATIONS[self.parameterisation]
        inits = getattr(form, "supported_inits", None)
        if inits is not None and self.init not in inits:
            raise ConfigError(f"parameterisation={self.parameterisation!r} sets its own starting point; init must be "
                              f"one of {list(inits)}, got init={self.init!r}")
        if self.dora and not getattr(form, "supports_dora", True):
            raise ConfigError(f"parameterisation={self.parameterisation!r} is not an additive update, so DoRA's "
                              "magnitude/direction wrapper does not apply; set dora=False")
        allowed = {**get_initialiser(self.init).options, **PARAMETERISATION_OPTIONS.get(self.parameterisation, {}),
                   **_rule_options()}
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown options {unknown} for parameterisation={self.parameterisation!r}, "
                              f"init={self.init!r}; allowed options: {allowed or 'none'}")
        if self.loraplus_ratio is not None and not (isinstance(self.loraplus_ratio, int | float)
                                                    and self.loraplus_ratio > 0):
            raise ConfigError(f"loraplus_ratio must be a positive number or None, got {self.loraplus_ratio!r}")
        if isinstance(self.targets, str | type):
            items = [self.targets]
        elif isinstance(self.targets, Sequence):
            items = list(self.targets)
        else:
            raise ConfigError(f"targets must be a name, regex, module type or a list of them; got {self.targets!r}")
        if not items:
            raise ConfigError("targets is empty; name at least one module, e.g. targets='all-linear'")
        for t in items:
            if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, nn.Module))):
                raise ConfigError(f"target {t!r} is neither a name/regex nor an nn.Module subclass")

        if not all(isinstance(m, str) and m for m in self.modules_to_save):
            raise ConfigError(f"modules_to_save must be a list of module names or suffixes, "
                              f"got {self.modules_to_save!r}")

    # ---- per-layer values -------------------------------------------------------------------
    def option(self, key: str) -> Any:
        """The value of method option ``key``: the user's, else the declaring component's default."""
        if key in self.options:
            return self.options[key]
        defaults = {**get_initialiser(self.init).options, **_parameterisation_options(self.parameterisation),
                    **_rule_options()}
        if key not in defaults:
            raise ConfigError(f"option {key!r} is not declared by parameterisation={self.parameterisation!r} "
                              f"or init={self.init!r}")
        return defaults[key]

    def rank_for(self, module_name: str) -> int:
        """The rank for layer ``module_name``: the first matching ``rank_pattern`` entry, else ``rank``."""
        return pattern_value(self.rank_pattern, module_name, self.rank)

    def alpha_for(self, module_name: str) -> float:
        """α for layer ``module_name``: the first matching ``alpha_pattern`` entry, else ``alpha``."""
        return pattern_value(self.alpha_pattern, module_name, self.alpha)

    def scale(self, rank: int, alpha: float) -> float:
        """s = α/r, or α/√r with rsLoRA."""
        return alpha / math.sqrt(rank) if self.rslora else alpha / rank

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; module types are written as ``"module.path:QualName"``."""
        d = asdict(self)
        encode = lambda t: t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"  # noqa: E731
        d["targets"] = [encode(t) for t in self.targets] if isinstance(self.targets, list) else encode(self.targets)
        d["exclude"] = list(self.exclude)
        d["modules_to_save"] = list(self.modules_to_save)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoRAConfig:
        """Inverse of :meth:`to_dict`; unknown fields raise ConfigError naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown LoRAConfig fields {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        decode = lambda t: _resolve_type(t) if isinstance(t, str) and ":" in t else t  # noqa: E731
        targets = d.get("targets", "all-linear")
        d["targets"] = [decode(t) for t in targets] if isinstance(targets, list) else decode(targets)
        return cls(**d)


def _parameterisation_options(name: str) -> dict[str, Any]:
    from .core.registry import PARAMETERISATION_OPTIONS

    return PARAMETERISATION_OPTIONS.get(name, {})


def _rule_options() -> dict[str, Any]:
    """Options of the gradient rules (``core.registry.RULE_OPTIONS``), allowed with any parameterisation."""
    from .core.registry import RULE_OPTIONS

    return {k: v for opts in RULE_OPTIONS.values() for k, v in opts.items()}


def _check_rank(name: str, r: Any) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ConfigError(f"{name} must be a positive int, got {r!r}")


def pattern_matches(pattern: str, module_name: str) -> bool:
    """PEFT's rule for rank/alpha patterns: the name ends with the pattern (a regex) after a dot."""
    return re.match(rf"(.*\.)?({pattern})$", module_name) is not None


def pattern_value(patterns: dict[str, Any], module_name: str, default: Any) -> Any:
    """The value of the first pattern matching ``module_name`` (PEFT's order and rule), else ``default``."""
    for pat, value in patterns.items():
        if pattern_matches(pat, module_name):
            return value
    return default


def _resolve_type(spec: str) -> type:
    import importlib

    mod, _, qual = spec.partition(":")
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"target type {spec!r} cannot be imported: {e}") from e
    return obj
