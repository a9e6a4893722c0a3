"""Move final attempts between databases: ``kshot attempts export`` writes them to a JSON-lines file,
``kshot attempts import`` adds them to another store.

What a search learnt then goes with its team: from a laptop's SQLite file into the team's PostgreSQL, or
from a machine that is given back into the next one, where ``kshot tune --warm-start`` starts a new
study from it. Only final attempts travel (completed, pruned): a failed or cancelled one resumes from a
checkpoint that stays on its own machine. Artefacts (model folders, checkpoints) stay there too; an
imported attempt keeps its command, steps and evaluations.

An archive is untrusted input: every line is checked (names, statuses, the command as config and
params, every number bounded) before anything is written, and an error names the file, the line and
the field, never echoing more than a short excerpt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config.schema import OUTER_STEPS
from ..errors import ConfigError, shown
from .errors import AttemptError
from .records import ATTEMPT_KINDS, FINAL_STATUSES, AttemptRecord
from .store import AttemptStore, restorable_fields

FORMAT = "kshot-attempt"
VERSION = 1
MAX_LINE_BYTES = 16 * 1024 * 1024  # one attempt: 10,000 steps of metrics and 10,000 task scores fit easily
MAX_ATTEMPTS = 100_000  # per file
MAX_FILE_BYTES = 512 * 1024 * 1024  # the whole file is checked, in memory, before anything is written
MAX_ROWS = 1_000_000  # steps, and evaluations, per attempt
MAX_METRICS = 64  # keys per step or task
MAX_KEY = 64  # characters of a metric's name
MAX_SPLIT = 32  # the store's column widths
MAX_TASK = 255
MAX_ERROR = 20_000  # characters of a failed attempt's error text (imported attempts are final, so rarely set)
FIELDS = ("name", "kind", "status", "command", "study", "trial", "n_steps", "total_steps", "metrics", "error")
TIMES = ("created_at", "started_at", "finished_at")


@dataclass
class ExportReport:
    exported: int = 0
    not_final: int = 0  # matched, but queued, running, failed or cancelled: left out


@dataclass
class ImportReport:
    added: int = 0
    already_here: int = 0  # an attempt of that name (or that study's trial) is in the database: left as it is


def export_attempts(store: AttemptStore, path: Path, *, study: str | None = None, name: str | None = None):
    """Write the final attempts matching ``study`` / ``name`` (text in the name) to ``path``, oldest first."""
    attempts, _ = store.list_attempts(study=study, name_contains=name, sort="id", limit=None)
    report = ExportReport()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        for attempt in attempts:
            if attempt.status not in FINAL_STATUSES:
                report.not_final += 1
                continue
            out.write(json.dumps(attempt_line(store, attempt), ensure_ascii=False, allow_nan=False) + "\n")
            report.exported += 1
    os.replace(partial, path)  # a reader never sees half a file
    return report


def attempt_line(store: AttemptStore, attempt: AttemptRecord) -> dict[str, Any]:
    """One attempt as an archive line: its fields, steps and evaluations (no artefacts, no worker)."""
    line: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    line.update({key: getattr(attempt, key) for key in FIELDS})
    line.update({key: _time_text(getattr(attempt, key)) for key in TIMES})
    line["steps"] = [[s.step, s.metrics] for s in store.steps(attempt.id)]
    line["evaluations"] = [
        [e.step, e.split, e.task, {"accuracy": e.accuracy, "macro_f1": e.macro_f1, "n_query": e.n_query, **e.extra}]
        for e in store.evaluations(attempt.id)
    ]
    return line


def import_attempts(store: AttemptStore, path: Path) -> ImportReport:
    """Add the attempts of the archive at ``path``: all lines are checked first, so a bad file writes nothing."""
    entries = read_archive(Path(path))
    report = ImportReport()
    for fields, steps, evaluations in entries:
        if store.restore_attempt(fields, steps, evaluations) is None:
            report.already_here += 1
        else:
            report.added += 1
    return report


def read_archive(path: Path) -> list[tuple[dict, list, list]]:
    """(fields, steps, evaluations) of each line, checked; ConfigError naming the file and line otherwise."""
    if not path.is_file():
        raise ConfigError(f"No archive file {shown(str(path))}: give the file `kshot attempts export` wrote.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{shown(str(path))} is larger than {MAX_FILE_BYTES // 2**20:,} MiB: split it (e.g. export by --study)."
        )
    entries, names = [], set()
    with path.open("rb") as file:
        number = 0
        while True:
            raw = file.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            number += 1
            where = f"{shown(str(path))} line {number}"
            if len(raw) > MAX_LINE_BYTES:
                raise ConfigError(f"{where} is longer than {MAX_LINE_BYTES:,} bytes: not an attempt archive.")
            if number > MAX_ATTEMPTS:
                raise ConfigError(f"{shown(str(path))} has more than {MAX_ATTEMPTS:,} attempts: split it.")
            if not raw.strip():
                continue
            try:
                entry = checked_line(_json(raw))
            except (ConfigError, AttemptError) as err:
                raise ConfigError(f"{where}: {err}") from None
            if entry[0]["name"] in names:
                raise ConfigError(f"{where}: attempt {shown(entry[0]['name'])} appears twice in the file.")
            names.add(entry[0]["name"])
            entries.append(entry)
    return entries


def checked_line(line: Any) -> tuple[dict, list, list]:
    from .runner import configs_from_command

    if not isinstance(line, dict) or line.get("format") != FORMAT:
        raise ConfigError(f'not an attempt of `kshot attempts export` (no "format": "{FORMAT}").')
    if line.get("version") != VERSION:
        raise ConfigError(f"archive version {shown(line.get('version'))}; this kshot reads version {VERSION}.")
    unknown = sorted(set(line) - {"format", "version", "steps", "evaluations", *FIELDS, *TIMES})
    if unknown:
        raise ConfigError(f"unknown field {shown(unknown[0])}.")
    fields = {key: line.get(key) for key in FIELDS}
    if fields["kind"] not in ATTEMPT_KINDS:
        raise ConfigError(f"field 'kind' is {shown(fields['kind'])}; choose from {', '.join(ATTEMPT_KINDS)}.")
    if fields["status"] not in FINAL_STATUSES:
        raise ConfigError(
            f"field 'status' is {shown(fields['status'])}: only final attempts ({', '.join(FINAL_STATUSES)}) move "
            "between databases."
        )
    if not isinstance(fields["command"], dict):
        raise ConfigError("field 'command' must be a mapping with 'config' and 'params'.")
    configs_from_command(fields["command"])  # the config and params a run of it would use, validated as ever
    for key in ("n_steps", "total_steps", "trial"):
        _whole(fields[key], f"field {key!r}", allow_none=key != "n_steps")
    if fields["metrics"] is None:
        fields["metrics"] = {}
    if not isinstance(fields["metrics"], dict):
        raise ConfigError("field 'metrics' must be a mapping.")
    if fields["error"] is not None and (not isinstance(fields["error"], str) or len(fields["error"]) > MAX_ERROR):
        raise ConfigError(f"field 'error' must be text of at most {MAX_ERROR:,} characters.")
    if (fields["study"] is None) != (fields["trial"] is None):
        raise ConfigError("fields 'study' and 'trial' go together: both set (a trial) or both null.")
    for key in TIMES:
        fields[key] = _time(line.get(key), key)
    if fields["created_at"] is None:
        raise ConfigError("field 'created_at' is missing.")
    fields["updated_at"] = fields["finished_at"] or fields["created_at"]
    fields = restorable_fields(fields)  # names, statuses and JSON as the store checks its own writes
    steps = [_step(row, i) for i, row in enumerate(_rows(line.get("steps"), "steps"))]
    evaluations = [_evaluation(row, i) for i, row in enumerate(_rows(line.get("evaluations"), "evaluations"))]
    return fields, steps, evaluations


def _json(raw: bytes) -> Any:
    def no_constant(name: str):
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text.") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"not JSON ({shown(str(err))}).") from None


def _rows(value: Any, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ROWS:
        raise ConfigError(f"field {field!r} must be a list of at most {MAX_ROWS:,} rows.")
    return value


def _step(row: Any, i: int) -> tuple[int, dict]:
    if not isinstance(row, list) or len(row) != 2:
        raise ConfigError(f"steps[{i}] must be [step, metrics].")
    return _whole(row[0], f"steps[{i}]'s step"), _metrics(row[1], f"steps[{i}]")


def _evaluation(row: Any, i: int) -> tuple[int, str, str, dict]:
    if not isinstance(row, list) or len(row) != 4:
        raise ConfigError(f"evaluations[{i}] must be [step, split, task, metrics].")
    step, split, task, metrics = row
    for value, what, limit in ((split, "split", MAX_SPLIT), (task, "task", MAX_TASK)):
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise ConfigError(f"evaluations[{i}]'s {what} must be a name of 1-{limit} characters.")
    return _whole(step, f"evaluations[{i}]'s step"), split, task, _metrics(metrics, f"evaluations[{i}]")


def _metrics(value: Any, where: str) -> dict:
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise ConfigError(f"{where}'s metrics must be a mapping of at most {MAX_METRICS} names to numbers.")
    for key, number in value.items():
        if len(key) > MAX_KEY:
            raise ConfigError(f"{where}: a metric name is longer than {MAX_KEY} characters.")
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise ConfigError(f"{where}: metric {shown(key)} is {shown(number)}, not a number.")
        if isinstance(number, int) and abs(number) > 2**53:
            raise ConfigError(f"{where}: metric {shown(key)} is out of range.")
    return value


def _whole(value: Any, what: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= OUTER_STEPS.high:
        raise ConfigError(f"{what} is {shown(value)}; use a whole number from 0 to {OUTER_STEPS.high:,}.")
    return value


def _time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"field {key!r} is {shown(value)}; use an ISO 8601 time.") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _time_text(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
