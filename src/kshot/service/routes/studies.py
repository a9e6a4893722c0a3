"""The studies resource: POST /tune queues a search's trials on the workers; GET shows studies and trials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from ...tracking.errors import AttemptNotFound
from ..deps import Authorized, QueueDep, SettingsDep, StoreDep
from ..schemas import AttemptPublic, StudyList, StudyPublic, StudySummary, TrialPublic, TuneQueued, TuneRequest

router = APIRouter(tags=["studies"])
StudyName = Annotated[str, Path(min_length=1, max_length=100)]


def get_storage(request: Request):
    """Optuna's storage on the store's database, opened once per app (its tables are created on first use)."""
    storage = getattr(request.app.state, "optuna_storage", None)
    if storage is None:
        from ...tuning import optuna_storage

        storage = request.app.state.optuna_storage = optuna_storage(request.app.state.store.url)
    return storage


StorageDep = Annotated[object, Depends(get_storage)]


@router.post(
    "/tune",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TuneQueued,
    dependencies=[Authorized],
    responses={
        409: {"description": "The study exists and the request gave config, params or space."},
        503: {"description": "The job queue is unavailable; the trial attempt is marked failed."},
    },
)
def start_tuning(
    body: TuneRequest, store: StoreDep, queue: QueueDep, settings: SettingsDep, storage: StorageDep
) -> TuneQueued:
    """Start a study (or give an existing one more trials): each trial is an attempt queued on the workers."""
    from ..launch_tune import queue_tune

    trials, added = queue_tune(body, store, queue, settings, storage)
    return TuneQueued(study=body.study, trials=[AttemptPublic.of(t) for t in trials], warm_started=added)


@router.get("/studies", response_model=StudyList)
def list_studies(storage: StorageDep) -> StudyList:
    """The kshot studies of this database, with their trials by state and the best value so far."""
    import optuna

    from ...tuning.study import SPEC_ATTR

    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        spec = summary.user_attrs.get(SPEC_ATTR)
        if not isinstance(spec, dict):
            continue  # not a kshot study
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        best = summary.best_trial
        out.append(
            StudySummary(
                name=summary.study_name,
                metric=str((spec.get("params") or {}).get("select_metric", "")),
                n_trials=len(trials),
                counts=counts,
                best_value=None if best is None else best.value,
                best_trial=None if best is None else best.number,
            )
        )
    return StudyList(studies=out)


@router.get("/studies/{name}", response_model=StudyPublic, responses={404: {"description": "No such study."}})
def get_study(name: StudyName, storage: StorageDep) -> StudyPublic:
    """A study's trials (params, value, validation reports, attempt), the best one, and param importance."""
    import optuna
    from optuna.trial import TrialState

    from ...tuning.study import SPEC_ATTR, outer_step

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise AttemptNotFound(f"No study named {name[:100]!r}; see GET /studies.") from None
    spec = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(spec, dict):
        raise AttemptNotFound(f"Study {name!r} was not made by kshot tune.")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    prune_by = str(spec.get("prune_by", "step"))
    fixed_steps = int((spec.get("params") or {}).get("meta_steps", 1))

    def reported_outer_step(reported: int, trial) -> int:
        # A trial's own schedule: a warm-started attempt's meta_steps may differ from the study's fixed one.
        steps = trial.user_attrs.get("meta_steps") or trial.params.get("meta_steps", fixed_steps)
        return outer_step(prune_by, reported, int(steps))

    return StudyPublic(
        name=name,
        metric=str((spec.get("params") or {}).get("select_metric", "")),
        pruner=str(spec.get("pruner", "")),
        prune_after=int(spec.get("prune_after", 0)),
        prune_by=prune_by,
        space=spec.get("space") or {},
        best=None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "attempt": best.user_attrs.get("attempt"),
        },
        trials=[TrialPublic.of(t, reported_outer_step) for t in trials],
        importance=_importance(study, complete),
    )


def _importance(study, complete) -> dict[str, float]:
    """fANOVA importance over the finished trials; empty where it cannot be told (too few, or one param value)."""
    if len(complete) < 2:
        return {}
    import optuna

    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
