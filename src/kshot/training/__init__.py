"""Training: the MetaTrainer, the few-shot evaluation protocol, callbacks and checkpoints."""

from .callbacks import TrainerCallback, TrainerControl
from .evaluation import evaluate_tasks, format_table
from .fewshot import adapt_model, evaluate_model, predict_texts
from .trainer import MetaTrainer, TrainResult

__all__ = [
    "MetaTrainer",
    "TrainResult",
    "TrainerCallback",
    "TrainerControl",
    "adapt_model",
    "evaluate_model",
    "evaluate_tasks",
    "format_table",
    "predict_texts",
]
