"""A dataclass base that validates and round-trips to plain dicts (what YAML and the attempt store need).

Each field carries ``metadata={"help": ...}``; ``from_dict`` rejects unknown keys (with the closest
known key) and values of the wrong type, naming the key path, so that a typo in a YAML file never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union

from ..errors import ConfigError, did_you_mean

T = TypeVar("T", bound="ConfigSection")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping of keys to values, got {value!r}.")
        return tp.from_dict(value, prefix=f"{path}.")
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, path)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"'{path}' must be {_type_name(tp)}, got {value!r}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"'{path}' must be one of {', '.join(map(str, choices))}, got {value!r}."
                f"{did_you_mean(str(value), map(str, choices))}"
            )
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {value!r}.")
        return [coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"'{path}' must be null, got {value!r}.")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}' must be true or false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}' must be an integer, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{path}' must be a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{path}' must be a string, got {value!r}.")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {path}")


@dataclasses.dataclass
class ConfigSection:
    """Base of every config dataclass: validated ``from_dict`` and lossless ``to_dict``."""

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"Unknown key '{prefix}{key}'.{did_you_mean(str(key), names)} "
                f"Valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}."
            )
        kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
        obj = cls(**kwargs)
        obj.validate(prefix)
        return obj

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks; subclasses raise :class:`ConfigError` naming the key."""

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text, for documentation and ``--help`` output."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING):
    """A dataclass field with help text."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
