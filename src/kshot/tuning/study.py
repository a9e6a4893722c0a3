"""A named study: what it searches (stored in the study itself, so that any process can join it), its
pruner, and the reconciliation that ends the trials whose process died."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..config import KshotConfig, Params
from ..config.schema import OUTER_STEPS
from ..errors import ConfigError, shown, unknown_choice
from ..tracking.heartbeat import lease_timing
from ..tracking.records import FINISHED_STATUSES
from ..tracking.store import NAME_PATTERN, AttemptStore
from .space import SearchSpace

logger = logging.getLogger(__name__)

PRUNERS = ("median", "halving", "none")
PRUNE_BY = ("progress", "step")
PROGRESS_SCALE = 1000  # prune_by progress reports each validation at its per mille of the trial's meta_steps
SPEC_ATTR = "kshot"  # the study's user attribute holding its TuneSpec
MAX_TRIALS = 10_000
SPEC_WAIT_SECONDS = 15.0  # an empty study's spec, written by its creator just after the study: see stored_spec
SPEC_POLL_SECONDS = 0.2
MAX_STUDY_NAME = 100  # trial attempts are named <study>-trial-<NNNN>, within the store's 128
MAX_PRUNE_AFTER = OUTER_STEPS.high  # outer steps: params.meta_steps' own bound


@dataclass
class StudySpec:
    """What one study searches: fixed config and params, the space, the pruner. Stored in the study."""

    config: KshotConfig
    params: Params
    space: SearchSpace
    pruner: str = "median"
    prune_after: int = 0
    """No trial is pruned at a validation before or at this outer step (the pruner's warm-up): with
    eval_every 100, 100 prunes from the second validation on. 0: from the first."""
    prune_by: str = "progress"
    """What the pruner compares trials at: ``progress``, the same fraction of each trial's own meta_steps (a
    400-step trial's step 200 beside a 200-step trial's step 100, both halfway through their learning-rate
    decay); ``step``, the same outer step (right when meta_steps is fixed, unfair to long schedules when it is
    searched: a 400-step trial's step 200 is judged against 200-step trials' final values)."""

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ConfigError(unknown_choice("pruner", self.pruner, PRUNERS))
        if isinstance(self.prune_after, bool) or not isinstance(self.prune_after, int):
            raise ConfigError(f"prune_after must be a whole number of outer steps, not {shown(self.prune_after)}.")
        if not 0 <= self.prune_after <= MAX_PRUNE_AFTER:
            raise ConfigError(f"prune_after is {self.prune_after}; use 0 to {MAX_PRUNE_AFTER:,} outer steps.")
        if self.prune_by not in PRUNE_BY:
            raise ConfigError(unknown_choice("prune_by", self.prune_by, PRUNE_BY))
        if self.params.eval_every <= 0:
            raise ConfigError(
                "kshot tune scores and prunes trials on the periodic validation: set params.eval_every above 0 "
                f"(it is {self.params.eval_every}), e.g. --set params.eval_every=50."
            )
        # Trials are scored on validation tasks only: the test tasks never take part in a search.
        self.params = Params.from_dict({**self.params.to_dict(), "test_after_train": False})

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "params": self.params.to_dict(),
            "space": self.space.to_dict(),
            "pruner": self.pruner,
            "prune_after": self.prune_after,
            "prune_by": self.prune_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        params = Params.from_dict(data["params"])
        return cls(
            KshotConfig.from_dict(data["config"]),
            params,
            SearchSpace.from_dict(data["space"], params),
            data.get("pruner", "median"),
            data.get("prune_after", 0),  # studies stored before it existed pruned from the first validation
            data.get("prune_by", "step"),  # and compared trials at the same outer step
        )

    def pruner_step(self, step: int, meta_steps: int) -> int:
        """The step a validation at outer ``step`` of a ``meta_steps``-step trial is reported at to the pruner."""
        return reported_step(self.prune_by, step, meta_steps)


def check_study_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > MAX_STUDY_NAME or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"Invalid study name {name!r}: use 1-{MAX_STUDY_NAME} letters, digits, '.', '_' or '-', starting with "
            "a letter or digit and not all digits, e.g. 'anil-arsc'."
        )
    return name


def trial_attempt_name(study: str, slot: int) -> str:
    return f"{study}-trial-{slot:04d}"


def reported_step(prune_by: str, step: int, meta_steps: int) -> int:
    """Outer ``step`` of a ``meta_steps``-step trial as the pruner sees it: itself, or its per mille of the schedule."""
    return step if prune_by == "step" else round(PROGRESS_SCALE * step / max(meta_steps, 1))


def outer_step(prune_by: str, reported: int, meta_steps: int) -> int:
    """The inverse of reported_step (to the validation's outer step, for showing a trial's reports)."""
    return reported if prune_by == "step" else round(reported * meta_steps / PROGRESS_SCALE)


def make_pruner(name: str, prune_after: int = 0, prune_by: str = "step"):
    """The study's pruner; ``prune_after``: the outer steps before which (and at which) none is pruned.

    With ``prune_by`` progress the pruner's steps are fractions of each trial's schedule, so prune_after (outer
    steps) is kept by the trial's callback instead of the pruner's warm-up.
    """
    import optuna

    if prune_by == "progress":
        prune_after = 0

    if name == "median" and prune_by == "progress":
        from .pruners import InterpolatedMedianPruner

        return InterpolatedMedianPruner(n_startup_trials=1)  # schedules of unlike length report at unlike steps
    if name == "median":
        # From the second trial on: on a 2-core CPU one ARSC trial takes 10-40 minutes, so a second unprunable
        # one would spend a third of a 90-minute search. At every validation after prune_after (0: the first,
        # where a run that has collapsed, every review called negative, already shows it).
        # Optuna prunes from step n_warmup_steps on; prune_after's own step is spared too.
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=prune_after + 1 if prune_after else 0)
    if name == "halving":
        # Its first rung at the first validation after prune_after.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=prune_after + 1 if prune_after else "auto")
    return optuna.pruners.NopPruner()


def _summary(storage, name: str):
    """Optuna's summary of the study named ``name``; None when there is none."""
    import optuna

    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    return next((s for s in summaries if s.study_name == name), None)


def stored_spec(storage, name: str, wait: float = 0.0) -> StudySpec | None:
    """The spec a kshot study was started with; None when there is no kshot study of that name.

    ``wait`` seconds: how long an empty study without a spec is watched for one. A process that
    creates a study writes its spec just after (Optuna creates a study and its attributes in two
    writes), so a second process joining in that gap waits for it instead of calling it foreign.
    """
    deadline = time.monotonic() + wait
    while True:
        summary = _summary(storage, name)
        if summary is not None and SPEC_ATTR in summary.user_attrs:
            return StudySpec.from_dict(summary.user_attrs[SPEC_ATTR])
        if summary is None or summary.n_trials > 0 or time.monotonic() >= deadline:
            return None
        time.sleep(SPEC_POLL_SECONDS)


def open_study(storage, name: str, spec: StudySpec | None, store: AttemptStore | None = None):
    """Create the study, or load it; a given spec must match the stored one. Returns (study, spec).

    ``store``: a new study's name must not be that of attempts already there (imported from another
    database): its trials' attempt names would be taken, and no process could claim them."""
    import optuna

    from .sampler import TrialSeededTPE, sampler_seed  # optuna at call time, not when kshot is imported

    check_study_name(name)
    if _summary(storage, name) is not None:
        stored = stored_spec(storage, name, wait=SPEC_WAIT_SECONDS)
        if stored is None:
            raise ConfigError(f"Study '{name}' was not made by kshot tune (it has no kshot spec); choose another.")
        given, kept = (spec.to_dict() if spec is not None else None), stored.to_dict()
        if given is not None and _canonical(given) != _canonical(kept):
            changed = [
                k
                for k in ("config", "params", "space", "pruner", "prune_after", "prune_by")
                if _canonical(given[k]) != _canonical(kept[k])
            ]
            raise ConfigError(
                f"Study '{name}' was made with another {', '.join(changed)}. Continue it with the same files (or "
                "with none: `kshot tune --study NAME` uses the stored ones), or start another --study."
            )
        spec = stored
    elif spec is None:
        raise ConfigError(f"No study named '{name}' yet: give -c, -p and -s to start it.")
    elif store is not None and store.list_attempts(study=name, limit=1)[1]:
        raise ConfigError(
            f"This database holds attempts of a study named '{name}' (imported with `kshot attempts import`?) but "
            "not the study itself: start a study of another name, and --warm-start adds those attempts to it."
        )
    sampler = TrialSeededTPE(sampler_seed(name, spec.params.seed))
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=sampler,
        pruner=make_pruner(spec.pruner, spec.prune_after, spec.prune_by),
        load_if_exists=True,
    )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study, spec


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def fail_lost_trials(store: AttemptStore, study) -> int:
    """End the study's trials whose process is gone (killed, machine lost): failed, never lost or run twice.

    The store first ends the attempts whose lease ran out or whose process on this host is dead;
    a trial Optuna still counts as running whose attempt has ended that way is then failed too. A
    trial whose process died before it named its attempt is failed once it is older than a lease.
    Returns how many trials were failed.
    """
    import optuna
    from optuna.trial import TrialState

    store.fail_interrupted()
    store.reap_expired()
    attempts = {a.name: a for a in store.list_attempts(study=study.study_name, limit=None)[0]}
    lease = timedelta(seconds=lease_timing()[1])
    now = datetime.now(timezone.utc)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attempt = attempts.get(trial.user_attrs.get("attempt", ""))
        if attempt is not None:
            lost = attempt.status in FINISHED_STATUSES
        else:
            started = trial.datetime_start
            started = started.replace(tzinfo=timezone.utc) if started and started.tzinfo is None else started
            lost = started is not None and now - started > lease
        if lost:
            try:
                study.tell(trial.number, state=TrialState.FAIL)
                failed += 1
            except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # another process ended it meanwhile
    if failed:
        logger.info("Study %s: %d trial(s) whose process stopped were failed.", study.study_name, failed)
    return failed
