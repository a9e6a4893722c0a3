"""A dataclass base that validates and round-trips to plain dicts (what YAML and the attempt store need).

Each field carries ``metadata={"help": ...}``; ``from_dict`` rejects unknown keys (with the closest
known key) and values of the wrong type, naming the key path, so that a typo in a YAML file never
silently falls back to a default.

Every value is bounded, since config and params also arrive as request bodies of the web service:
strings hold at most :data:`MAX_STRING` characters and lists at most :data:`MAX_ITEMS` items (in every
section), floats are finite, and each numeric field declares its :class:`Range` (``field(...,
range=Range(1, 1000))``), which its help text states and ``validate`` enforces. Messages show values
through :func:`~kshot.errors.shown`, so an error never echoes a huge input.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

from ..errors import ConfigError, did_you_mean, shown

T = TypeVar("T", bound="ConfigSection")

MAX_STRING = 4096
"""Most characters of any string value (paths, names, hub ids): far above any real one."""
MAX_ITEMS = 10_000
"""Most items of any list value (domain lists, label names)."""


def _number(x: float) -> str:
    """1000000 → '1,000,000', 1e-05 → '1e-05', 10.0 → '10'."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:g}"


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric field accepts: ``low`` to ``high``, inclusive unless ``*_open``; floats finite."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self) -> str:
        """For help texts: '1 to 1,000', 'above 0, at most 10', 'at least 0, below 1'."""
        if not self.low_open and not self.high_open:
            return f"{_number(self.low)} to {_number(self.high)}"
        return self.describe().replace(" and ", ", ")

    def describe(self) -> str:
        """For messages: 'at least 1 and at most 1,000', 'above 0 and at most 10', ..."""
        low = f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        high = f"{'below' if self.high_open else 'at most'} {_number(self.high)}"
        return f"{low} and {high}"


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
    # Size limits first, whatever the annotation: they hold in every section, and inside a union.
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ConfigError(
            f"'{path}' is a string of {len(value):,} characters, more than the {MAX_STRING:,} allowed, "
            f"got {shown(value, 40)}."
        )
    if isinstance(value, (list, tuple)) and len(value) > MAX_ITEMS:
        raise ConfigError(
            f"'{path}' is a list of {len(value):,} items, more than the {MAX_ITEMS:,} allowed, got {shown(value, 40)}."
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping of keys to values, got {shown(value)}.")
        return tp.from_dict(value, prefix=f"{path}.")
    if origin in (Union, types.UnionType):
        if isinstance(value, float) and not math.isfinite(value) and float in typing.get_args(tp):
            raise ConfigError(f"'{path}' must be a finite number or null, got {shown(value)}.")
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, path)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"'{path}' must be {_type_name(tp)}, got {shown(value)}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("no" if value is False else "yes") in choices:
            value = "no" if value is False else "yes"  # YAML 1.1 reads an unquoted no / yes as a boolean
        if value not in choices:
            raise ConfigError(
                f"'{path}' must be one of {', '.join(map(str, choices))}, got {shown(value)}."
                f"{did_you_mean(str(value), map(str, choices))}"
            )
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {shown(value)}.")
        return [coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"'{path}' must be null, got {shown(value)}.")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}' must be true or false, got {shown(value)}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}' must be an integer, got {shown(value)}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{path}' must be a number, got {shown(value)}.")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"'{path}' must be a finite number, got {shown(value)}.")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{path}' must be a string, got {shown(value)}.")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {path}")


def check_range(value: Any, bounds: Range, path: str, null: str | None = None) -> None:
    """Raise a :class:`ConfigError` naming ``path``, the value and the range unless ``value`` is in it.

    ``null`` says what null means for a field that may be null (``None`` always passes).
    """
    if value is None or isinstance(value, str) or value in bounds:  # a string is a choice coerce() checked
        return
    allowed = bounds.describe() + (f", or null to {null}" if null else "")
    raise ConfigError(f"'{path}' must be {allowed}, got {shown(value)}.")


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
                f"Unknown key {shown(f'{prefix}{key}')}.{did_you_mean(str(key), names)} "
                f"Valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}."
            )
        kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
        obj = cls(**kwargs)
        obj.validate(prefix)
        return obj

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, prefix: str = "") -> None:
        """The range of every numeric field; subclasses add cross-field checks (after calling this one)
        and raise :class:`ConfigError` naming the key."""
        for f in dataclasses.fields(self):
            bounds = f.metadata.get("range")
            if bounds is not None:
                check_range(getattr(self, f.name), bounds, f"{prefix}{f.name}", f.metadata.get("null"))

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        """Field name → its :class:`Range`, for every numeric field."""
        return {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text, for documentation and ``--help`` output."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def field(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = dataclasses.MISSING,
    range: Range | None = None,
    null: str | None = None,
):
    """A dataclass field with help text; a numeric one gives its ``range``, which the help text then ends with.

    ``null``: for a field that may be null, what null means (said by the range error).
    """
    metadata: dict[str, Any] = {"help": help}
    if range is not None:
        metadata["help"] = f"{help} ({range.text()}{', or null' if null else ''})"
        metadata["range"] = range
    if null is not None:
        metadata["null"] = null
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
