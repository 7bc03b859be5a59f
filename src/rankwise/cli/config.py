"""Typed command configs: YAML files and ``key=value`` overrides mapped onto dataclasses.

    cfg = load_config(FinetuneConfig, yaml_path="my.yaml", overrides=[("rank", "16"), ("lr", "2e-4")])

Precedence: the dataclass defaults, then the YAML file, then command-line flags and ``key=value``
pairs in the order given. Unknown keys and bad values raise ConfigError naming the field and what it
accepts. ``write_config`` writes the fully resolved config next to a run's outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.files import atomic_write_bytes


def field_types(cls: type) -> dict[str, Any]:
    """Field name → resolved type annotation."""
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """A short human name of an annotation (``int``, ``list[str]``, ``float | None``)."""
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


def _parse_scalar(text: str) -> Any:
    try:
        import yaml
    except ImportError:  # YAML is optional on the command line: JSON spellings still work
        import json

        try:
            return json.loads(text)
        except ValueError:
            return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(name: str, tp: Any, value: Any, from_text: bool = False) -> Any:
    """``value`` as type ``tp`` for field ``name``; command-line text is parsed (YAML scalars, lists, dicts)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (from_text and str(value).strip().lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(name, inner[0], value, from_text)
    bad = lambda: ConfigError(f"{name}={value!r} is not a valid {type_name(tp)}")  # noqa: E731
    if tp is str:
        if isinstance(value, str):
            return value
        if from_text or isinstance(value, int | float):
            return str(value)
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")
    if tp is int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError as e:
                raise bad() from e
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value.strip())  # YAML 1.1 would read "1e-3" as a string
            except ValueError as e:
                raise bad() from e
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if origin is list or tp is list:
        if isinstance(value, str):
            text = value.strip()
            value = _parse_scalar(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise bad()
        return [coerce(f"{name}[{i}]", args[0] if args else Any, v, from_text) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r} must be a mapping, e.g. {name}='{{key: value}}'")
        return dict(value)
    return value


def load_config(cls: type, yaml_path: str | Path | None = None, overrides: list[tuple[str, Any]] = ()) -> Any:
    """Build ``cls`` from its defaults, a YAML file and ``(key, value)`` overrides; then validate it."""
    values: dict[str, Any] = {}
    types_ = field_types(cls)
    if yaml_path:
        try:
            import yaml
        except ImportError as e:
            raise ConfigError("reading --config files needs PyYAML: pip install 'rankwise[cli]'") from e

        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of field: value")
        for k, v in data.items():
            values[_known(cls, types_, k)] = coerce(k, types_[_known(cls, types_, k)], v)
    for k, v in overrides:
        key = _known(cls, types_, k)
        values[key] = coerce(key, types_[key], v, from_text=isinstance(v, str))
    cfg = cls(**values)
    cfg.validate()
    return cfg


def _known(cls: type, types_: dict[str, Any], key: str) -> str:
    key = key.replace("-", "_")
    if key not in types_:
        close = difflib.get_close_matches(key, list(types_), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ConfigError(f"unknown setting {key!r} for {cls.__name__}.{hint} Known settings: {sorted(types_)}")
    return key


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    """``["lr=1e-3", "rank=16"]`` → ``[("lr", "1e-3"), ("rank", "16")]``."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got {item!r} (e.g. lr=1e-3)")
        k, _, v = item.partition("=")
        out.append((k.strip(), v))
    return out


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help with allowed values) for every field, for ``--help``."""
    types_ = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            text += f"; one of {', '.join(map(str, f.metadata['choices']))}"
        rows.append((f.name, type_name(types_[f.name]), default, text))
    return rows


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain values."""
    return dataclasses.asdict(cfg)


def write_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically); JSON, which YAML readers accept, without PyYAML."""
    try:
        import yaml

        text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
    except ImportError:
        import json

        text = json.dumps(to_dict(cfg), indent=2) + "\n"
    atomic_write_bytes(Path(path), text.encode())
