"""Typed configuration: ``config.yaml`` (paths, data, model) and ``params.yaml`` (hyperparameters)."""

from .io import apply_overrides, dump_yaml, load_config, load_params, load_yaml
from .schema import DataConfig, KshotConfig, LoggingConfig, ModelConfig, Params

__all__ = [
    "DataConfig",
    "KshotConfig",
    "LoggingConfig",
    "ModelConfig",
    "Params",
    "apply_overrides",
    "dump_yaml",
    "load_config",
    "load_params",
    "load_yaml",
]
