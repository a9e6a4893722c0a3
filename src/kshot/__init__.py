"""kshot: few-shot text classification by meta-learning, the Hugging Face way."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public API, imported on first use: `import kshot` (and every `kshot` command, the service
# included) must not pay for torch and transformers before it needs them.
_EXPORTS = {
    "KshotConfig": "kshot.config",
    "Params": "kshot.config",
    "load_config": "kshot.config",
    "load_params": "kshot.config",
    "KshotError": "kshot.errors",
    "ConfigError": "kshot.errors",
    "DataError": "kshot.errors",
    "ModelError": "kshot.errors",
    "MetaTrainer": "kshot.training",
    "TrainResult": "kshot.training",
    "evaluate_model": "kshot.training",
    "adapt_model": "kshot.training",
    "predict_texts": "kshot.training",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .config import KshotConfig, Params, load_config, load_params
    from .errors import ConfigError, DataError, KshotError, ModelError
    from .training import MetaTrainer, TrainResult, adapt_model, evaluate_model, predict_texts


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kshot' has no attribute {name!r}")
