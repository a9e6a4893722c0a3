"""``kshot attempts``: list, show and compare recorded runs; and the tracking of ``kshot train``/``evaluate``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Recorded training and test runs (the attempt store).")

DbOpt = Annotated[
    Optional[str],
    typer.Option(
        "--db", help="SQLAlchemy URL of the attempt store; default $KSHOT_DATABASE_URL, else ./kshot_attempts.db."
    ),
]
NameOpt = Annotated[
    Optional[str],
    typer.Option(
        "--name", help="Record the run as this attempt (default: generated, e.g. train-20260131-142501-3f9a)."
    ),
]
NoTrackOpt = Annotated[bool, typer.Option("--no-track", help="Do not record the run in the attempt store.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# -- tracking of `kshot train` and `kshot evaluate` ------------------------------------------------
def stored_configs(name: str, db: str | None):
    """Config and params of an existing training attempt, for `kshot train --resume --name NAME`."""
    from ..tracking import AttemptStore
    from ..tracking.runner import configs_from_command

    attempt = AttemptStore(db).get_attempt(name)
    if attempt is None or attempt.kind != "train":
        from ..errors import ConfigError

        raise ConfigError(f"--resume --name {name}: no training attempt of that name; give -c/-p to start one.")
    return configs_from_command(attempt.command)


def tracked_train(cfg, prm, *, resume: bool, accelerator, name: str | None, db: str | None, no_track: bool):
    """Meta-train, recorded as an attempt; `--resume` with the name of an attempt continues that attempt."""
    from ..training import MetaTrainer

    if no_track or not accelerator.is_main_process:
        return MetaTrainer(cfg, prm, accelerator=accelerator).train(resume=resume)
    # Imported only when recording: --no-track must run where the store's database library is missing.
    from ..tracking import AttemptStore, new_attempt_name, train_attempt, train_command

    store = AttemptStore(db)
    attempt = store.get_attempt(name) if (resume and name) else None
    if attempt is not None and attempt.kind == "train":
        store.update_attempt(attempt.id, command=train_command(cfg, prm))
    else:
        attempt = store.create_attempt(
            name or new_attempt_name("train"), "train", train_command(cfg, prm), status="running"
        )
    _recording(store, attempt.name)
    return train_attempt(store, attempt.id, cfg, prm, resume=resume, accelerator=accelerator)


def tracked_evaluate(model: Path, cfg, overrides: dict, *, name: str | None, db: str | None, no_track: bool):
    from ..training import evaluate_model

    if no_track:
        return evaluate_model(model, cfg, overrides)
    from ..tracking import AttemptStore, eval_command, evaluate_attempt, new_attempt_name

    store = AttemptStore(db)
    attempt = store.create_attempt(
        name or new_attempt_name("test"), "test", eval_command(model, cfg, overrides), status="running"
    )
    _recording(store, attempt.name)
    return evaluate_attempt(store, attempt.id, model, cfg, overrides)


def _recording(store, name: str) -> None:
    from ..tracking.database import safe_url

    typer.echo(f"Recording as attempt '{name}' in {safe_url(store.url)} (see: kshot attempts show {name}).")


# -- kshot attempts ... -----------------------------------------------------------------------
@app.command("list")
def list_attempts(
    status: Annotated[
        Optional[list[str]],
        typer.Option("--status", help="Only this status (repeatable): queued, running, completed, failed..."),
    ] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="train or test.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Only names containing this text.")] = None,
    study: Annotated[
        Optional[str], typer.Option("--study", help="Only the trials of this `kshot tune` study (sorted by trial).")
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", help="Field to sort by, '-' first for descending: created_at, name, status, n_steps, ..."
        ),
    ] = "-created_at",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Attempts per page.")] = 20,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number, from 1.")] = 1,
    db: DbOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """The attempts, newest first, with status, steps and final accuracy / macro-F1."""
    from ..tracking import AttemptStore

    if study is not None and sort == "-created_at":
        sort = "trial"
    rows, total = AttemptStore(db).list_attempts(
        status=status or None,
        kind=kind,
        name_contains=name,
        study=study,
        sort=sort,
        offset=(page - 1) * limit,
        limit=limit,
    )
    if json_out:
        typer.echo(json.dumps({"total": total, "page": page, "attempts": [r.to_dict() for r in rows]}, indent=2))
        return
    if not rows:
        typer.echo("No attempts." if total == 0 else f"No attempts on page {page} ({total} in all).")
        return
    trial = f"{'trial':>5} " if study is not None else ""
    typer.echo(
        f"{'id':>5}  {trial}{'name':<32} {'kind':<5} {'status':<10} {'steps':>11} {'acc':>7} {'F1':>6}"
        f"  {'created (UTC)':<16} {'time':>7}"
    )
    for r in rows:
        steps = f"{r.n_steps}/{r.total_steps}" if r.total_steps else str(r.n_steps or "-")
        trial = f"{'-' if r.trial is None else r.trial:>5} " if study is not None else ""
        typer.echo(
            f"{r.id:>5}  {trial}{_clip(r.name, 32):<32} {r.kind:<5} {r.status:<10} {steps:>11}"
            f" {_pct(r.metrics.get('accuracy')):>7} "
            f"{_num(r.metrics.get('macro_f1')):>6}  {_when(r.created_at):<16} {_duration(r.duration_seconds):>7}"
        )
    pages = max(1, math.ceil(total / limit))
    typer.echo(f"page {page} of {pages}; {total} attempt{'s' if total != 1 else ''}")


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Attempt name (or id).")],
    steps: Annotated[bool, typer.Option("--steps", help="Print every step's metrics.")] = False,
    db: DbOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Command, status, timings, losses, evaluations and artefacts of one attempt."""
    from ..training import format_table

    store, attempt = _open(db, name)
    step_rows = store.steps(attempt.id)
    if json_out:
        data = {
            **attempt.to_dict(),
            "steps": [s.to_dict() for s in step_rows],
            "evaluations": [e.to_dict() for e in store.evaluations(attempt.id)],
        }
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"Attempt {attempt.name} (id {attempt.id}): {attempt.kind}, {attempt.status}")
    if attempt.study is not None:
        number = "not sampled yet" if attempt.trial is None else f"trial {attempt.trial}"
        typer.echo(f"study {attempt.study}, {number} (kshot tune)")
    typer.echo(
        f"created {_when(attempt.created_at)}, started {_when(attempt.started_at)},"
        f" finished {_when(attempt.finished_at)}"
        f" ({_duration(attempt.duration_seconds)})"
    )
    if attempt.kind == "train":
        total = f" of {attempt.total_steps}" if attempt.total_steps else ""
        typer.echo(f"steps: {attempt.n_steps}{total}{_loss_summary(step_rows)}")
    typer.echo("command:")
    typer.echo(_indent(_yaml(attempt.command)))
    if attempt.metrics:
        typer.echo("metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in attempt.metrics.items()))
    from ..tracking import means_by_step

    for split in ("validation", "test"):
        rows = store.evaluations(attempt.id, split)
        if split == "validation" and rows:
            by_step = means_by_step(rows)
            typer.echo(
                "validation (mean over tasks): "
                + "; ".join(f"step {s}: acc {_pct(a)}, F1 {_num(f)}" for s, (a, f) in by_step.items())
            )
        elif rows:
            last = store.latest_evaluation(attempt.id, "test")
            typer.echo(format_table(last, title=f"test tasks (model of step {last['step']}):"))
    if attempt.artefacts:
        typer.echo("artefacts: " + ", ".join(f"{k}: {v}" for k, v in attempt.artefacts.items()))
    if attempt.error:
        typer.echo("error:\n" + _indent(attempt.error.rstrip()))
    if steps and step_rows:
        keys = sorted({k for s in step_rows for k in s.metrics})
        typer.echo(f"{'step':>6}  " + "  ".join(f"{k:>12}" for k in keys))
        for s in step_rows:
            typer.echo(f"{s.step:>6}  " + "  ".join(f"{_num(s.metrics.get(k), 4):>12}" for k in keys))


@app.command()
def compare(
    names: Annotated[list[str], typer.Argument(help="Two or more attempt names (or ids).")],
    db: DbOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Per-task accuracy / macro-F1 side by side (test tasks, else validation), final losses and steps."""
    from ..errors import ConfigError

    if len(names) < 2:
        raise ConfigError("compare needs at least two attempts, e.g. kshot attempts compare run-a run-b.")
    store = None
    columns = []
    for key in names:
        store, attempt = _open(db, key, store)
        split, evaluation = "test", store.latest_evaluation(attempt.id, "test")
        if evaluation is None:
            split, evaluation = "validation", store.latest_evaluation(attempt.id, "validation")
        last = store.steps(attempt.id)[-1:] or None
        columns.append(
            {
                "attempt": attempt,
                "evaluation": evaluation,
                "split": split if evaluation else "-",
                "last_step": last[0] if last else None,
            }
        )
    if json_out:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": c["attempt"].name,
                        "status": c["attempt"].status,
                        "steps": c["attempt"].n_steps,
                        "split": c["split"],
                        "final_metrics": c["last_step"].metrics if c["last_step"] else {},
                        "evaluation": c["evaluation"],
                    }
                    for c in columns
                ],
                indent=2,
            )
        )
        return
    width = max(17, *(len(c["attempt"].name) for c in columns)) + 2
    label = 26

    def head(title: str, cells: list) -> None:
        typer.echo(f"{title:<{label}}" + "".join(f"{_clip(str(x), width - 2):>{width}}" for x in cells))

    head("", [c["attempt"].name for c in columns])
    head("status", [c["attempt"].status for c in columns])
    head("steps", [c["attempt"].n_steps for c in columns])
    loss_keys = sorted({k for c in columns if c["last_step"] for k in c["last_step"].metrics})
    for key in loss_keys:
        head(f"final {key}", [_num(c["last_step"].metrics.get(key), 4) if c["last_step"] else "-" for c in columns])
    head("evaluated on", [c["split"] for c in columns])
    typer.echo(f"{'accuracy % / macro-F1':<{label}}")
    tasks: list[str] = []
    for c in columns:
        for task in (c["evaluation"] or {}).get("tasks", {}):
            if task not in tasks:
                tasks.append(task)
    for task in tasks + ["mean"]:
        cells = []
        for c in columns:
            ev = c["evaluation"] or {}
            m = ev.get("mean") if task == "mean" else ev.get("tasks", {}).get(task)
            cells.append(f"{_pct(m.get('accuracy'))} / {_num(m.get('macro_f1'))}" if m else "-")
        head(f"  {_clip(task, label - 3)}", cells)


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="The archive to write (JSON lines, one attempt a line).")],
    study: Annotated[Optional[str], typer.Option("--study", help="Only the trials of this study.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Only names containing this text.")] = None,
    db: DbOpt = None,
) -> None:
    """Write final attempts (completed, pruned) with their steps and evaluations, for `kshot attempts import`."""
    from ..tracking import AttemptStore
    from ..tracking.archive import export_attempts
    from ..tracking.database import safe_url

    store = AttemptStore(db)
    report = export_attempts(store, file, study=study, name=name)
    left = f"; {report.not_final} not final (queued, running, failed, cancelled) left out" if report.not_final else ""
    typer.echo(f"Wrote {report.exported} attempt(s) of {safe_url(store.url)} to {file}{left}.")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="An archive written by `kshot attempts export`.")],
    db: DbOpt = None,
) -> None:
    """Add an archive's attempts to this store (a name it holds already is kept as it is). `kshot tune
    --warm-start` then starts new studies from them."""
    from ..tracking import AttemptStore
    from ..tracking.archive import import_attempts
    from ..tracking.database import safe_url

    store = AttemptStore(db)
    report = import_attempts(store, file)
    kept = f"; {report.already_here} already there, kept as they were" if report.already_here else ""
    typer.echo(f"Added {report.added} attempt(s) from {file} to {safe_url(store.url)}{kept}.")


# -- helpers ----------------------------------------------------------------------------------
def _open(db: str | None, key: str, store=None):
    from ..tracking import AttemptNotFound, AttemptStore

    store = store or AttemptStore(db)
    attempt = store.get_attempt(int(key)) if key.isdigit() else store.get_attempt(key)
    if attempt is None:
        from ..tracking.database import safe_url

        raise AttemptNotFound(f"No attempt '{key}' in {safe_url(store.url)}; see `kshot attempts list`.")
    return store, attempt


def _loss_summary(rows) -> str:
    losses = [(s.step, s.metrics.get("loss")) for s in rows if s.metrics.get("loss") is not None]
    if not losses:
        return ""
    best = min(losses, key=lambda x: x[1])
    return (
        f"; loss {losses[0][1]:.4f} (step {losses[0][0]}) -> {losses[-1][1]:.4f} (step {losses[-1][0]}),"
        f" min {best[1]:.4f} at step {best[0]}"
    )


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _pct(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "-"


def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
