"""Requests name models and data as data: a registry name, a hub id, or a path under an allowed root.

Everything a job reads is resolved here, in the API, before it is queued: a path outside the
configured roots is refused (422) and the stored command carries absolute, resolved paths only.
Everything a job writes (output, cache and log folders) lies under ``output_root``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .settings import ServiceSettings

BUNDLED_MODEL_NAMES = ("default", "all-MiniLM-L6-v2")
# A Hugging Face hub id: "name" or "namespace/name"; letters, digits, '-', '_', '.'; no '..'.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?")


class InvalidReference(ValueError):
    """A request field names something the service may not use; ``loc`` is the field's path."""

    def __init__(self, loc: tuple[str, ...], message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or "\\" in value or os.path.exists(value)


def _is_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and ".." not in value


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def resolve_path(value: str, roots: list[Path], loc: tuple[str, ...], what: str = "allowed roots") -> str:
    """The absolute path (symlinks resolved) of ``value`` if it lies under one of ``roots``."""
    if "\x00" in value:
        raise InvalidReference(loc, "The path contains a NUL character.")
    real = Path(os.path.realpath(os.path.expanduser(value)))
    if not _under(real, roots):
        shown = ", ".join(str(r) for r in roots) or "none configured"
        raise InvalidReference(
            loc,
            f"'{value}' is outside the {what} ({shown}). Name a path under one of them"
            + (", or add its folder to KSHOT_ALLOWED_ROOTS." if what == "allowed roots" else "."),
        )
    return str(real)


def resolve_model(value: str | None, settings: ServiceSettings, loc: tuple[str, ...]) -> str | None:
    """A model reference: the bundled default, a registry name, a path under the roots, or a hub id."""
    if value is None or value in BUNDLED_MODEL_NAMES:
        return value
    if value in settings.models:
        return settings.models[value]
    if _looks_like_path(value):
        return resolve_path(value, settings.resolved_roots(), loc)
    if _is_hub_id(value):
        return value
    raise InvalidReference(loc, _not_a_reference(value, "model", settings.models))


def resolve_data(data: dict[str, Any], settings: ServiceSettings, loc: tuple[str, ...]) -> None:
    """Resolve ``data.path`` in place: registry name, path under the roots, or (format hf) a hub id."""
    value = data["path"]
    if value in settings.datasets:
        data["path"] = settings.datasets[value]
    elif data["format"] == "hf" and not _looks_like_path(value) and _is_hub_id(value):
        return
    elif data["format"] != "hf" or _looks_like_path(value):
        data["path"] = resolve_path(value, settings.resolved_roots(), loc)
    else:
        raise InvalidReference(loc, _not_a_reference(value, "dataset", settings.datasets))


def _not_a_reference(value: str, kind: str, registry: dict[str, str]) -> str:
    names = ", ".join(sorted(registry)) or "none configured"
    return (
        f"'{value}' is not a {kind} registry name ({names}), a hub id ('name' or 'namespace/name') "
        "or a path under the allowed roots."
    )


def resolve_write_dir(value: str | None, default: Path, settings: ServiceSettings, loc: tuple[str, ...]) -> str:
    """A folder a job writes to: ``default`` unless the request names one under ``output_root``."""
    root = Path(os.path.realpath(settings.output_root))
    if value is None:
        return str(Path(os.path.realpath(default)))
    return resolve_path(value, [root], loc, what="output root")
