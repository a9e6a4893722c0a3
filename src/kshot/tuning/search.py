"""``run_search``: work one study until it has its n_trials (with any other process on it) or time runs out.

The loop reads top to bottom: open the study, end the trials of dead processes, optionally add what
the store knows, then claim and run trial slots one at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..tracking.store import AttemptStore
from .study import MAX_TRIALS, StudySpec, fail_lost_trials, open_study
from .trial import TrialOutcome, run_trial
from .warm_start import WarmStart, warm_start

logger = logging.getLogger(__name__)
# Trials that fail one after another say the set-up is broken (data, model), not the params.
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class SearchResult:
    study: str
    outcomes: list[TrialOutcome] = field(default_factory=list)  # the trials this process ran
    warm: WarmStart | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def run_search(
    store: AttemptStore,
    storage,
    study_name: str,
    spec: StudySpec | None,
    n_trials: int,
    *,
    timeout: float | None = None,
    warm: bool = False,
    on_trial=None,
) -> SearchResult:
    """Run the study's trial slots 0..n_trials-1 that no other process has claimed.

    ``spec`` None: continue a study with its stored spec. ``on_trial(slot, outcome)`` is called
    after every slot (outcome None: another process has it), for a progress bar.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_TRIALS:
        raise ConfigError(f"--n-trials must be an integer from 1 to {MAX_TRIALS}, got {n_trials!r}.")
    if timeout is not None and not 0 < timeout <= 30 * 24 * 3600:
        raise ConfigError(f"--timeout must be seconds above 0 and at most 30 days, got {timeout!r}.")
    import kshot.training.trainer  # noqa: F401  (torch and transformers load before a trial's lease starts)

    study, spec = open_study(storage, study_name, spec, store)
    fail_lost_trials(store, study)
    result = SearchResult(study_name)
    if warm:
        result.warm = warm_start(store, study, spec)
    start, failures = time.monotonic(), 0
    for slot in range(n_trials):
        if timeout is not None and time.monotonic() - start > timeout:
            logger.info("Study %s: --timeout reached; the remaining trials are left to another run.", study_name)
            break
        outcome = run_trial(store, study, spec, slot)
        if on_trial is not None:
            on_trial(slot, outcome)
        if outcome is None:
            continue
        result.outcomes.append(outcome)
        failures = failures + 1 if outcome.state == "failed" else 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise ConfigError(
                f"Study {study_name}: {failures} trials failed in a row, the last with: {outcome.error}. "
                f"Fix the set-up, then continue with `kshot tune --study {study_name}`."
            )
    result.summary = summarize(store, study, spec)
    return result


def summarize(store: AttemptStore, study, spec: StudySpec) -> dict[str, Any]:
    """Counts by state, the best trial, the top trials, and the meta-training time pruning saved."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    attempts = {a.name: a for a in store.list_attempts(study=study.study_name, limit=None)[0]}
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=True)
    saved = 0.0
    for t in trials:
        attempt = attempts.get(t.user_attrs.get("attempt", ""))
        if t.state == TrialState.PRUNED and attempt is not None and attempt.n_steps and attempt.duration_seconds:
            # The steps it did not run (of its own meta_steps, when searched), at the rate it ran the others.
            planned = t.params.get("meta_steps", spec.params.meta_steps)
            per_step = attempt.duration_seconds / attempt.n_steps
            saved += max(planned - attempt.n_steps, 0) * per_step
    top = [
        {
            "number": t.number,
            "value": t.value,
            "params": dict(t.params),
            "attempt": t.user_attrs.get("attempt"),
            "warm_start": bool(t.user_attrs.get("warm_start")),
            "output_dir": _output_dir(store, attempts, t.user_attrs.get("attempt")),
        }
        for t in complete[:10]
    ]
    return {
        "study": study.study_name,
        "metric": spec.params.select_metric,
        "counts": {k: v for k, v in counts.items() if v},
        "best": top[0] if top else None,
        "top": top,
        "pruning_saved_seconds": saved,
    }


def _output_dir(store: AttemptStore, attempts: dict, name: str | None) -> str | None:
    """Where the trial's best model is (a warm start's trial: its attempt, of another study or none)."""
    attempt = attempts.get(name) if name else None
    if attempt is None and name:
        attempt = store.get_attempt(name)
    if attempt is None:
        return None
    return (attempt.command.get("config") or {}).get("output_dir")
