"""YAML load/dump and ``--set section.key=value`` overrides."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .schema import KshotConfig, Params

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"Cannot read {path}: {err.strerror}. Check the path given with -c/-p.") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values at the top level.")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's message on one line: the problem and where it is (its own message spans several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def dump_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write YAML atomically: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, path)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"Override '{item}' must look like section.key=value, e.g. params.inner_lr=1e-4.")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2 or parts[0] not in ("config", "params"):
        raise ConfigError(
            f"Override '{item}' must start with 'config.' or 'params.', e.g. params.inner_lr=1e-4 "
            "or config.data.path=/data/arsc."
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"Override '{item}': cannot read the value {raw!r}: {_yaml_problem(err)}") from err
    # YAML 1.1 reads '1e-4' (no dot) as a string; in an override it is meant as a number.
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    return parts, value


def apply_overrides(config: dict[str, Any], params: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``section.key=value`` overrides in place to the raw config and params dicts."""
    for item in overrides or []:
        parts, value = _parse_override(item)
        target = config if parts[0] == "config" else params
        for part in parts[1:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override '{item}': '{part}' is not a section.")
            target = node
        target[parts[-1]] = value


def load_config(path: str | Path | None = None, data: dict[str, Any] | None = None) -> KshotConfig:
    raw = data if data is not None else (load_yaml(path) if path else {})
    try:
        return KshotConfig.from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None


def load_params(path: str | Path | None = None, data: dict[str, Any] | None = None) -> Params:
    raw = data if data is not None else (load_yaml(path) if path else {})
    try:
        return Params.from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path or 'params'}: {err}") from None
