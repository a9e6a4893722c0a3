"""Hyperparameter search over params with Optuna, on the attempt store's database (``kshot tune``)."""

from .search import SearchResult, run_search, summarize
from .space import Dimension, SearchSpace
from .storage import optuna_storage
from .study import PRUNERS, StudySpec, check_study_name, fail_lost_trials, open_study, stored_spec
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
    "check_study_name",
    "fail_lost_trials",
    "open_study",
    "optuna_storage",
    "run_search",
    "run_trial",
    "stored_spec",
    "summarize",
    "warm_start",
]
