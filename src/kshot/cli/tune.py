"""``kshot tune``: an Optuna search over params, every trial an attempt, on the attempt store's database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .attempts import DbOpt


def tune(
    study: Annotated[str, typer.Option("--study", help="Study name: a new one starts, an existing one continues.")],
    config: Annotated[
        Optional[Path], typer.Option("-c", "--config", help="config.yaml (data, model); must have validation tasks.")
    ] = None,
    params: Annotated[
        Optional[Path], typer.Option("-p", "--params", help="params.yaml: the fixed params of every trial.")
    ] = None,
    space: Annotated[
        Optional[Path], typer.Option("-s", "--space", help="space.yaml: each searched param's distribution.")
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override of the fixed config or params (repeatable).")
    ] = None,
    n_trials: Annotated[
        int, typer.Option("--n-trials", help="The study's trials in all, shared by every process working it.")
    ] = 20,
    timeout: Annotated[
        Optional[float], typer.Option("--timeout", help="Start no new trial after this many seconds.")
    ] = None,
    pruner: Annotated[
        str, typer.Option("--pruner", help="Prune from the periodic validation: median, halving or none.")
    ] = "median",
    prune_after: Annotated[
        int,
        typer.Option(
            "--prune-after", help="Prune no trial at a validation up to this outer step (0: from the first one)."
        ),
    ] = 0,
    prune_by: Annotated[
        str,
        typer.Option(
            "--prune-by",
            help="Compare trials at the same fraction of their meta_steps (progress) or at the same outer step (step).",
        ),
    ] = "progress",
    warm_start: Annotated[
        bool,
        typer.Option("--warm-start", help="Add the store's completed attempts on the same problem as trials first."),
    ] = False,
    db: DbOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the study's summary as JSON.")] = None,
) -> None:
    """Search params with Optuna: trials are attempts, pruned from validation, resumable, shareable by processes."""
    from ..config import LoggingConfig
    from ..errors import ConfigError
    from ..tracking import AttemptStore
    from ..tuning import SearchSpace, StudySpec, optuna_storage, run_search
    from ..tuning.study import check_study_name, stored_spec
    from .logs import setup_logging
    from .main import _load

    given = config is not None or params is not None or space is not None or bool(set_)
    if given and space is None:
        raise ConfigError("Starting a study needs -s space.yaml (with -c and -p); continue one with --study alone.")
    check_study_name(study)
    store = AttemptStore(db)
    storage = optuna_storage(store.url)
    spec = None
    if given:
        cfg, prm = _load(config, params, set_)
        spec = StudySpec(cfg, prm, SearchSpace.load(space, prm), pruner, prune_after, prune_by)
    known = spec or stored_spec(storage, study)
    logs = known.config.logging if known is not None else LoggingConfig()
    setup_logging(logs.log_dir, logs.level)
    _quiet_optuna()
    bar = _TrialBar(n_trials)
    try:
        result = run_search(
            store, storage, study, spec, n_trials, timeout=timeout, warm=warm_start, on_trial=bar.update
        )
    finally:
        bar.close()
    typer.echo(format_summary(result.summary, config))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.summary, indent=2, default=str), encoding="utf-8")


class _TrialBar:
    """A progress bar over the study's trial slots (a slot another process runs counts too)."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="trials", unit="trial", dynamic_ncols=True)
        self.best = None

    def update(self, slot: int, outcome) -> None:
        if outcome is not None and outcome.state == "complete" and (self.best is None or outcome.value > self.best):
            self.best = outcome.value
        if self.best is not None:
            self.bar.set_postfix({"best": f"{self.best:.4f}"}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # kshot logs each trial itself


def format_summary(summary: dict, config: Path | None) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items()) or "no trials"
    lines = [f"Study {summary['study']}: {counts}; objective: mean validation {summary['metric']}."]
    if summary["pruning_saved_seconds"]:
        lines.append(f"Pruning saved about {summary['pruning_saved_seconds'] / 60:.1f} min of meta-training.")
    top = summary["top"]
    if not top:
        return "\n".join(lines)
    names = sorted({k for t in top for k in t["params"]})
    lines.append("")
    lines.append(f"{'trial':>5} {'value':>8}  " + "  ".join(f"{n:>14}" for n in names) + "  attempt")
    for t in top:
        values = "  ".join(f"{_fmt(t['params'].get(n)):>14}" for n in names)
        mark = " (warm start)" if t["warm_start"] else ""
        lines.append(f"{t['number']:>5} {t['value']:>8.4f}  {values}  {t['attempt']}{mark}")
    best = summary["best"]
    if best and best.get("output_dir"):
        lines.append("")
        lines.append("Score the best trial's model on the test tasks (once, after the search):")
        lines.append(f"  kshot evaluate --model {best['output_dir']} -c {config or 'CONFIG.yaml'}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
