"""Request and response schemas, one family per resource."""

from .attempts import AttemptCommand, AttemptCreate, AttemptPage, AttemptPublic, AttemptUpdate
from .jobs import TestRequest, TrainRequest
from .metrics import EvaluationPublic, StepPublic

__all__ = [
    "AttemptCommand",
    "AttemptCreate",
    "AttemptPage",
    "AttemptPublic",
    "AttemptUpdate",
    "EvaluationPublic",
    "StepPublic",
    "TestRequest",
    "TrainRequest",
]
