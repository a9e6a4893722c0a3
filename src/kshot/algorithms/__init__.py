"""Meta-learning algorithms: one module each, looked up by name from ``params.algorithm``.

The names, where each class lives and the params checks of each algorithm are in the torch-free
registry :mod:`kshot.config.algorithms`; modules are imported only when their algorithm is used.
"""

from __future__ import annotations

import importlib

from ..config.algorithms import algorithm_names, algorithm_spec
from .base import MetaAlgorithm


def available() -> list[str]:
    return algorithm_names()


def get_algorithm(name: str) -> type[MetaAlgorithm]:
    spec = algorithm_spec(name)
    return getattr(importlib.import_module(spec.module), spec.class_name)


__all__ = ["MetaAlgorithm", "available", "get_algorithm"]
