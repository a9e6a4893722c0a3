"""Meta-learning algorithms: one module each, looked up by name from ``params.algorithm``."""

from __future__ import annotations

import importlib

from ..errors import ConfigError, unknown_choice
from .base import MetaAlgorithm

# name → "module:Class"; modules are imported only when their algorithm is used.
_REGISTRY: dict[str, str] = {
    "reptile": "kshot.algorithms.reptile:Reptile",
    "fomaml": "kshot.algorithms.maml:FOMAML",
    "maml": "kshot.algorithms.maml:MAML",
    "metasgd": "kshot.algorithms.metasgd:MetaSGD",
    "anil": "kshot.algorithms.anil:ANIL",
    "finetune": "kshot.algorithms.finetune:Finetune",
    "transfer": "kshot.algorithms.transfer:Transfer",
    "protonet": "kshot.algorithms.protonet:ProtoNet",
    "matchnet": "kshot.algorithms.matchnet:MatchingNet",
    "relationnet": "kshot.algorithms.relationnet:RelationNet",
    "siamese": "kshot.algorithms.siamese:Siamese",
    "learned_optimizer": "kshot.algorithms.learned_optimizer:LearnedOptimizerAlgorithm",
}


def available() -> list[str]:
    return list(_REGISTRY)


def get_algorithm(name: str) -> type[MetaAlgorithm]:
    if name not in _REGISTRY:
        raise ConfigError(unknown_choice("algorithm", name, available()))
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["MetaAlgorithm", "available", "get_algorithm"]
