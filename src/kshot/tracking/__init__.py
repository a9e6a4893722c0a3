"""Attempt tracking: every training and test run stored in a database (SQLite by default, PostgreSQL)."""

from .callback import TrackingCallback
from .database import database_url
from .errors import AttemptError, AttemptExists, AttemptNotFound
from .records import ATTEMPT_KINDS, ATTEMPT_STATUSES, AttemptRecord, EvaluationRecord, StepRecord, means_by_step
from .runner import (
    eval_command,
    evaluate_attempt,
    new_attempt_name,
    run_test_attempt,
    run_training_attempt,
    train_attempt,
    train_command,
)
from .store import AttemptStore

__all__ = [
    "ATTEMPT_KINDS",
    "ATTEMPT_STATUSES",
    "AttemptError",
    "AttemptExists",
    "AttemptNotFound",
    "AttemptRecord",
    "AttemptStore",
    "EvaluationRecord",
    "StepRecord",
    "TrackingCallback",
    "database_url",
    "eval_command",
    "evaluate_attempt",
    "means_by_step",
    "new_attempt_name",
    "run_test_attempt",
    "run_training_attempt",
    "train_attempt",
    "train_command",
]
