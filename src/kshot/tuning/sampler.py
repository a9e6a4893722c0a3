"""The study's sampler: Optuna's TPE, its random draws seeded by the study and the trial number.

One seed per study would make every process that joins a study draw the same random start-up trials
(each process builds its own sampler from the stored seed), so two `kshot tune` processes started
together would spend their first trials on one config twice. Seeding each trial's draws by its number
(unique within a study: Optuna's storage hands them out) keeps a one-process study exactly replayable
and gives concurrent processes distinct trials. ``constant_liar`` makes TPE count the trials other
processes are running as bad results, so that after start-up they do not all propose the same point.
"""

from __future__ import annotations

import zlib
from typing import Any

import optuna
from optuna.samplers import BaseSampler

# TPE samples at random until this many trials are finished (complete or pruned; warm-start trials count:
# a warm start from two completed attempts is enough to leave random sampling).
# Optuna's default, 10, would make a whole ARSC search on a 2-core CPU (5-10 trials in 90 minutes) random,
# and leave a warm-started study's past trials unused until its own tenth.
TPE_STARTUP_TRIALS = 2


def sampler_seed(name: str, seed: int) -> int:
    """The study's sampler seed: from params.seed and the study's name, so that a second study on the same
    params (a warm-started one) does not draw the first one's random start-up trials again."""
    return zlib.crc32(f"{name}:{seed}".encode())


def trial_seed(study_seed: int, number: int) -> int:
    return zlib.crc32(f"{study_seed}:{number}".encode())


class TrialSeededTPE(BaseSampler):
    """TPE (``n_startup_trials`` = :data:`TPE_STARTUP_TRIALS`, ``constant_liar``) made afresh for each
    trial with the seed :func:`trial_seed` (``seed``, trial number); see the module docstring."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._tpe = self._make(seed)

    @staticmethod
    def _make(seed: int) -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP_TRIALS, constant_liar=True, seed=seed)

    def before_trial(self, study, trial) -> None:
        self._tpe = self._make(trial_seed(self.seed, trial.number))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
