"""kshot: few-shot text classification by meta-learning, the Hugging Face way."""

__version__ = "0.1.0"

from .config import KshotConfig, Params, load_config, load_params  # noqa: E402
from .errors import ConfigError, DataError, KshotError, ModelError  # noqa: E402
from .training import MetaTrainer, evaluate_model  # noqa: E402

__all__ = [
    "ConfigError",
    "DataError",
    "KshotConfig",
    "KshotError",
    "MetaTrainer",
    "ModelError",
    "Params",
    "__version__",
    "evaluate_model",
    "load_config",
    "load_params",
]
