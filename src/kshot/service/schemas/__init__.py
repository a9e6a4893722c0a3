"""Request and response schemas, one family per resource."""

from .attempts import AttemptCommand, AttemptCreate, AttemptPage, AttemptPublic, AttemptUpdate
from .jobs import TestRequest, TrainRequest
from .metrics import EvaluationPublic, StepPublic
from .studies import StudyList, StudyPublic, StudySummary, TrialPublic, TuneQueued, TuneRequest

__all__ = [
    "AttemptCommand",
    "AttemptCreate",
    "AttemptPage",
    "AttemptPublic",
    "AttemptUpdate",
    "EvaluationPublic",
    "StepPublic",
    "StudyList",
    "StudyPublic",
    "StudySummary",
    "TestRequest",
    "TrainRequest",
    "TrialPublic",
    "TuneQueued",
    "TuneRequest",
]
