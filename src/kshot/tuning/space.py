"""The search space of ``kshot tune``: which params a study samples, from which distribution, in what range.

``space.yaml`` maps param names to distributions::

    inner_lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    inner_steps: {type: int, low: 2, high: 20}
    inner_optimizer: {type: categorical, choices: [sgd, adam]}

It is checked like config and params: an unknown param or field is named with the closest valid
one, and every bound (and every choice) must itself be a valid value of that param in ``Params``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Params, load_yaml
from ..errors import ConfigError, did_you_mean, shown, unknown_choice

TYPES = ("float", "int", "categorical")
NUMERIC_FIELDS = ("type", "low", "high", "log", "step")
FIELDS = {"float": NUMERIC_FIELDS, "int": NUMERIC_FIELDS, "categorical": ("type", "choices")}
# A study samples a handful of params; a longer list is a mistake, and a bound keeps a request small.
MAX_PARAMS = 32
MAX_CHOICES = 64
# What a study cannot vary: one study is one problem (same data, model and algorithm), so that its
# trials and the attempts a warm start adds are comparable; and trials never score test tasks.
FIXED = {
    "algorithm": "one study tunes one algorithm: start a study per algorithm",
    "test_after_train": "trials never score the test tasks",
    "select_metric": "it is the objective: set it in params.yaml",
}


@dataclass(frozen=True)
class Dimension:
    """One param's distribution."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return CategoricalDistribution(list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this dimension can sample (a warm start adds only those)."""
        if self.type == "categorical":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is not None:
            steps = (value - self.low) / self.step
            return abs(steps - round(steps)) < 1e-6
        return True

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    @classmethod
    def from_dict(cls, data: Any, base: Params | None = None, source: str = "space") -> SearchSpace:
        """Validate ``data`` (the YAML mapping) against ``Params``; ``base``: the study's fixed params."""
        if not isinstance(data, dict) or not data:
            raise ConfigError(
                f"{source}: the search space must map param names to distributions, e.g. "
                "inner_lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}."
            )
        if len(data) > MAX_PARAMS:
            raise ConfigError(f"{source}: {len(data)} params to search; at most {MAX_PARAMS}.")
        base = base or Params()
        known = [f.name for f in dataclasses.fields(Params)]
        names = [f for f in known if f not in FIXED]
        dims = []
        for name, spec in data.items():
            if not isinstance(name, str) or name not in known:
                raise ConfigError(f"{source}: {unknown_choice('param', name, names)}")
            if name in FIXED:
                raise ConfigError(f"{source}: '{name}' cannot be searched ({FIXED[name]}).")
            dims.append(_dimension(name, spec, base, source))
        return cls(tuple(dims))

    @classmethod
    def load(cls, path: str | Path, base: Params | None = None) -> SearchSpace:
        return cls.from_dict(load_yaml(path), base, source=str(path))

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def distributions(self) -> dict[str, Any]:
        return {d.name: d.distribution() for d in self.dimensions}

    def contains(self, values: dict[str, Any]) -> bool:
        return all(d.name in values and d.contains(values[d.name]) for d in self.dimensions)

    def to_dict(self) -> dict[str, Any]:
        return {d.name: d.to_dict() for d in self.dimensions}


def _dimension(name: str, spec: Any, base: Params, source: str) -> Dimension:
    where = f"{source}: {name}"
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be a mapping such as {{type: float, low: 0.0001, high: 0.01}}, got {shown(spec)}."
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}: {unknown_choice('type', kind, TYPES)}")
    for key in spec:
        if key not in FIELDS[kind]:
            close = did_you_mean(str(key), FIELDS[kind])
            raise ConfigError(
                f"{where}: unknown field {shown(str(key))} of a {kind} distribution.{close} "
                f"Fields: {', '.join(FIELDS[kind])}."
            )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES:
            raise ConfigError(f"{where}: choices must be a list of 1 to {MAX_CHOICES} values.")
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            raise ConfigError(f"{where}: every choice must be a number, a string, true/false or null.")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: the choices repeat a value.")
        for choice in choices:
            _check_value(name, choice, base, where)
        return Dimension(name, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    values = {}
    for key in ("low", "high", "step"):
        value = spec.get(key)
        if value is None and key == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
            what = "an integer" if kind == "int" else "a finite number"
            raise ConfigError(f"{where}: '{key}' must be {what}, got {shown(value)}.")
        values[key] = float(value) if kind == "float" else value
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: 'log' must be true or false, got {shown(log)}.")
    low, high, step = values["low"], values["high"], values.get("step")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high}).")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low}.")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be above 0, and cannot be combined with log.")
    for bound in (low, high):
        _check_value(name, bound, base, where)
    return Dimension(name, kind, low=low, high=high, log=log, step=step)


def _check_value(name: str, value: Any, base: Params, where: str) -> None:
    """``value`` must be a valid value of the param itself (its type and range in ``Params``)."""
    try:
        Params.from_dict({**base.to_dict(), name: value})
    except ConfigError as err:
        raise ConfigError(f"{where}: {shown(value)} is not a valid value of the param: {err}") from None
