"""Training: the MetaTrainer, the few-shot evaluation protocol, callbacks and checkpoints."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Imported on first use: the callbacks (used by the attempt store and the service) need no torch.
_EXPORTS = {
    "MetaTrainer": ".trainer",
    "TrainResult": ".trainer",
    "TrainerCallback": ".callbacks",
    "TrainerControl": ".callbacks",
    "adapt_model": ".adapt",
    "evaluate_model": ".evaluate_saved",
    "predict_texts": ".predict",
    "evaluate_tasks": ".evaluation",
    "format_table": ".metrics",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .adapt import adapt_model
    from .callbacks import TrainerCallback, TrainerControl
    from .evaluate_saved import evaluate_model
    from .evaluation import evaluate_tasks
    from .metrics import format_table
    from .predict import predict_texts
    from .trainer import MetaTrainer, TrainResult


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'kshot.training' has no attribute {name!r}")
