"""Requests name models and data as data: a registry name, a hub id, or a path under an allowed root.

Everything a job reads is resolved here, at every point a command enters (a request in the API, a
stored attempt in the worker): a path outside the configured roots is refused (422, naming the
field) and the stored command carries absolute, resolved paths only. A hub id is ``owner/name``,
never a bare name, so no ``datasets`` builder (``text``, ``json``, ``csv`` ...) or script name can
pass as one. Everything a job writes lies under ``output_root``, in a folder one attempt owns.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .settings import ServiceSettings

BUNDLED_MODEL_NAMES = ("default", "all-MiniLM-L6-v2")
# A Hugging Face hub id: "owner/name"; letters, digits, '-', '_', '.'; no '..', no leading '.' or '-'.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}")
# The file that says which attempt owns an output folder; written by the API when it creates the folder.
OWNER_FILE = ".kshot-attempt.json"
CACHE_FOLDER = ".cache"
SHOWN_CHARS = 120


class InvalidReference(ValueError):
    """A request field names something the service may not use; ``loc`` is the field's path."""

    def __init__(self, loc: tuple[str, ...], message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


def shown(value: str) -> str:
    """``value`` quoted for a message, cut short: an error never echoes unbounded input."""
    text = value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + f"… ({len(value)} characters)"
    return repr(text)


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or "\\" in value or os.path.exists(value)


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and ".." not in value


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _real(value: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(value))))


def resolve_path(value: str, roots: list[Path], loc: tuple[str, ...], what: str = "allowed roots") -> str:
    """The absolute path (symlinks resolved) of ``value`` if it lies under one of ``roots``."""
    if not isinstance(value, str) or not value:
        raise InvalidReference(loc, "Give a path as a non-empty string.")
    if "\x00" in value:
        raise InvalidReference(loc, "The path contains a NUL character.")
    real = _real(value)
    if not _under(real, roots):
        listed = ", ".join(str(r) for r in roots) or "none configured"
        raise InvalidReference(
            loc,
            f"{shown(value)} is outside the {what} ({listed}). Name a path under one of them"
            + (", or add its folder to KSHOT_ALLOWED_ROOTS." if what == "allowed roots" else "."),
        )
    return str(real)


def _not_local_on_worker(value: str, loc: tuple[str, ...]) -> str:
    # datasets and transformers read a local folder before the hub when one has the id's name: a hub
    # id must not also name a folder beside the process that loads it.
    if os.path.exists(value):
        raise InvalidReference(
            loc, f"{shown(value)} names a folder beside the service as well as a hub id; name it by absolute path."
        )
    return value


def resolve_model(value: str | None, settings: ServiceSettings, loc: tuple[str, ...]) -> str | None:
    """A model reference: the bundled default, a registry name, a path under the roots, or a hub id."""
    if value is None or value in BUNDLED_MODEL_NAMES:
        return value
    if value in settings.models:
        return registry_entry(settings.models[value])
    if _looks_like_path(value):
        return resolve_path(value, settings.resolved_roots(), loc)
    if is_hub_id(value):
        return _not_local_on_worker(value, loc)
    raise InvalidReference(loc, _not_a_reference(value, "model", settings.models))


def resolve_data(data: dict[str, Any], settings: ServiceSettings, loc: tuple[str, ...]) -> None:
    """Resolve ``data.path`` in place: registry name, path under the roots, or (format hf) an ``owner/name`` hub id."""
    # Class lists given as files are paths like any other: under the roots, or refused.
    for key in ("train_classes", "validation_classes", "test_classes"):
        if isinstance(data.get(key), str):
            data[key] = resolve_path(data[key], settings.resolved_roots(), loc[:-1] + (key,))
    value = data["path"]
    if value in settings.datasets:
        data["path"] = registry_entry(settings.datasets[value])
    elif _looks_like_path(value) or data["format"] != "hf":
        data["path"] = resolve_path(value, settings.resolved_roots(), loc)
    elif is_hub_id(value):
        data["path"] = _not_local_on_worker(value, loc)
    else:
        raise InvalidReference(loc, _not_a_reference(value, "dataset", settings.datasets))


def registry_entry(value: str) -> str:
    """A registry entry is the operator's choice (environment, not request): a hub id or a path anywhere."""
    return value if is_hub_id(value) and not os.path.exists(value) else str(_real(value))


def registry_paths(settings: ServiceSettings) -> list[Path]:
    """The registry's local entries, which a stored command may name although they lie outside the roots."""
    entries = (*settings.datasets.values(), *settings.models.values())
    return [Path(registry_entry(v)) for v in entries if not is_hub_id(registry_entry(v))]


def _not_a_reference(value: str, kind: str, registry: dict[str, str]) -> str:
    names = ", ".join(sorted(registry)) or "none configured"
    return (
        f"{shown(value)} is not a {kind} registry name ({names}), a hub id ('owner/name') "
        "or a path under the allowed roots."
    )


# --------------------------------------------------------------------------------- output folders
def output_root(settings: ServiceSettings) -> Path:
    return _real(settings.output_root)


def new_output_dir(value: str | None, name: str, settings: ServiceSettings, loc: tuple[str, ...]) -> Path:
    """The folder a new training attempt will own: ``<output_root>/<name>``, or a new one the request names.

    A request may not name the root, a hidden folder (the shared cache), a folder that exists, or
    one inside (or holding) another attempt's folder.
    """
    root = output_root(settings)
    target = root / name if value is None else Path(resolve_path(value, [root], loc, what="output root"))
    if target == root:
        raise InvalidReference(
            loc, "output_dir is the output root itself; name a new folder under it (or leave it out)."
        )
    parts = target.relative_to(root).parts
    if any(part.startswith(".") for part in parts):
        raise InvalidReference(loc, "output_dir may not be (or lie in) a hidden folder of the output root.")
    for ancestor in [root.joinpath(*parts[:i]) for i in range(1, len(parts))]:
        if (ancestor / OWNER_FILE).exists():
            raise InvalidReference(loc, f"output_dir lies inside the folder of attempt {owner_of(ancestor)!r}.")
    if os.path.lexists(target):
        raise InvalidReference(loc, f"output_dir {shown(str(target))} exists already; name a new folder.")
    return target


def claim_output_dir(path: Path, attempt: str) -> None:
    """Create ``path`` for ``attempt`` and mark it as that attempt's; refuses a folder that appeared meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()  # exclusive: of two requests naming one new folder, one gets it
    except FileExistsError:
        raise InvalidReference(
            ("body", "config", "output_dir"), "output_dir exists already; name a new folder."
        ) from None
    (path / OWNER_FILE).write_text(json.dumps({"attempt": attempt}), encoding="utf-8")


def release_output_dir(path: Path) -> None:
    """Undo ``claim_output_dir`` when the attempt could not be created (e.g. its name was taken)."""
    try:
        (path / OWNER_FILE).unlink(missing_ok=True)
        path.rmdir()
    except OSError:
        pass


def owner_of(path: Path) -> str | None:
    try:
        data = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    owner = data.get("attempt") if isinstance(data, dict) else None
    return owner if isinstance(owner, str) else None


def owned_output_dir(value: Any, attempt: str, settings: ServiceSettings, loc: tuple[str, ...]) -> Path:
    """The output folder a stored attempt names, if it lies under the output root and this attempt owns it."""
    if not isinstance(value, str):
        raise InvalidReference(loc, "The attempt's command names no output_dir.")
    path = Path(resolve_path(value, [output_root(settings)], loc, what="output root"))
    if owner_of(path) != attempt:
        raise InvalidReference(
            loc,
            f"The output folder {shown(str(path))} does not belong to attempt {attempt!r} (it was recorded, not "
            "started by this service, or its folder was replaced). Start it again with POST /train.",
        )
    return path


def inside_dir(value: str | None, default: Path, allowed: list[Path], loc: tuple[str, ...], what: str) -> str:
    """A folder a job writes to (cache, logs): ``default`` unless the request names one under ``allowed``."""
    if value is None:
        return str(default)
    return resolve_path(value, allowed, loc, what=what)
