"""Hyperparameter search over params with Optuna, on the attempt store's database (``kshot tune``)."""

from .search import SearchResult, run_search, summarize
from .space import Dimension, SearchSpace
from .storage import optuna_storage
from .study import PRUNERS, StudySpec, fail_lost_trials, open_study
from .trial import PruningCallback, TrialOutcome, run_trial
from .warm_start import WarmStart, warm_start

__all__ = [
    "PRUNERS",
    "Dimension",
    "PruningCallback",
    "SearchResult",
    "SearchSpace",
    "StudySpec",
    "TrialOutcome",
    "WarmStart",
    "fail_lost_trials",
    "open_study",
    "optuna_storage",
    "run_search",
    "run_trial",
    "summarize",
    "warm_start",
]
