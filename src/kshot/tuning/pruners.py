"""The median rule for trials of unlike schedules: each report judged against the peers' values at that share.

With ``prune_by progress`` a trial reports its validations at per mille of its own ``meta_steps``: a 400-step
trial at 250, 500, 750 and 1000, a 300-step one at 333, 667 and 1000. Optuna's median pruner compares a report
only with peers that reported at the very same step, so schedules of unlike length rarely meet: in the sixth
ARSC search a trial that called every review negative ran all its 400 steps, having no peer at 750 per mille.
Here a peer's value at a share between two of its reports is read off the straight line between them (never
beyond its first or last report), so every completed trial that covers that share takes part.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from statistics import median

import optuna
from optuna.trial import TrialState


class InterpolatedMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial whose latest report is worse than the median of completed trials' values at that step."""

    def __init__(self, n_startup_trials: int = 1):
        self.n_startup_trials = n_startup_trials

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self.n_startup_trials:
            return False
        peers = peer_values(completed, step)
        if not peers:
            return False
        middle = median(peers)
        return value < middle if study.direction == optuna.study.StudyDirection.MAXIMIZE else value > middle


def peer_values(trials, step: int) -> list[float]:
    """The values at ``step`` of the trials whose reports cover it (read between reports where needed)."""
    return [v for t in trials if (v := value_at(t.intermediate_values, step)) is not None]


def value_at(reports: dict[int, float], step: int) -> float | None:
    """A trial's value at ``step``, linear between its two reports around it; None outside its reports."""
    steps = sorted(s for s, v in reports.items() if not math.isnan(v))
    if not steps or not steps[0] <= step <= steps[-1]:
        return None
    i = bisect_left(steps, step)
    if steps[i] == step:
        return reports[step]
    lo, hi = steps[i - 1], steps[i]
    return reports[lo] + (reports[hi] - reports[lo]) * (step - lo) / (hi - lo)
