"""Start a study from what the store knows: past completed attempts on the same problem become trials."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from ..tracking.store import AttemptStore
from .study import StudySpec

logger = logging.getLogger(__name__)


@dataclass
class WarmStart:
    added: int = 0
    outside_space: int = 0  # same problem, but a searched param outside the space
    no_validation: int = 0  # same problem, but no validation score to give Optuna
    already_in: int = 0  # added by an earlier warm start, or a trial of this study


def same_problem(command: dict, spec: StudySpec) -> bool:
    """Same data, model, algorithm and objective: the attempt's score means what a trial's would."""
    config, params = command.get("config") or {}, command.get("params") or {}
    ours_config, ours = spec.config.to_dict(), spec.params.to_dict()
    return (
        config.get("data") == ours_config["data"]
        and config.get("model") == ours_config["model"]
        and params.get("algorithm") == ours["algorithm"]
        and params.get("select_metric", "macro_f1") == ours["select_metric"]
    )


def validation_by_step(store: AttemptStore, attempt_id: int, metric: str) -> dict[int, float]:
    """The mean validation ``metric`` over tasks at each step it was scored: what a trial reports to the pruner."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for row in store.evaluations(attempt_id, split="validation"):
        value = getattr(row, metric, None)
        if value is not None:
            by_step[row.step].append(value)
    return {step: sum(v) / len(v) for step, v in sorted(by_step.items()) if v}


def best_validation(store: AttemptStore, attempt_id: int, metric: str) -> float | None:
    """The objective a trial reports: the best over steps of the mean validation ``metric`` over tasks."""
    return max(validation_by_step(store, attempt_id, metric).values(), default=None)


def warm_start(store: AttemptStore, study, spec: StudySpec) -> WarmStart:
    """Add the store's completed attempts on this problem to ``study`` as finished trials (each once)."""
    import optuna

    report = WarmStart()
    known = {t.user_attrs.get("attempt") for t in study.get_trials(deepcopy=False)}
    attempts, _ = store.list_attempts(status="completed", kind="train", sort="id", limit=None)
    distributions = spec.space.distributions()
    metric = spec.params.select_metric
    for attempt in attempts:
        if not same_problem(attempt.command, spec):
            continue
        if attempt.name in known or attempt.study == study.study_name:
            report.already_in += 1
            continue
        params = attempt.command.get("params") or {}
        values = {name: params.get(name) for name in spec.space.names}
        if not spec.space.contains(values):
            report.outside_space += 1
            continue
        by_step = validation_by_step(store, attempt.id, metric)
        if not by_step:
            report.no_validation += 1
            continue
        # Its validations too, as a trial would have reported them: the pruner then judges new trials against it.
        meta_steps = int(params.get("meta_steps") or max(by_step))
        study.add_trial(
            optuna.trial.create_trial(
                params=values,
                distributions=distributions,
                value=max(by_step.values()),
                intermediate_values={spec.pruner_step(step, meta_steps): v for step, v in by_step.items()},
                user_attrs={"attempt": attempt.name, "warm_start": True, "meta_steps": meta_steps},
            )
        )
        report.added += 1
    logger.info(
        "Warm start of study %s: %d attempt(s) added as trials; skipped %d outside the space, %d without a "
        "validation score, %d already in the study.",
        study.study_name,
        report.added,
        report.outside_space,
        report.no_validation,
        report.already_in,
    )
    return report
