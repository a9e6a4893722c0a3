"""The algorithm registry without the algorithms: names, where each one lives, and its params checks.

``Params.validate`` and the web service check a params body here, so they never import
:mod:`kshot.algorithms` (and with it torch); :func:`kshot.algorithms.get_algorithm` imports the class
named here only when the algorithm is used. A check here sees the params alone: whatever needs the
model (the shape of its head, its dropout layers) is checked when the algorithm is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, shown, unknown_choice

if TYPE_CHECKING:
    from .schema import Params

Check = Callable[["Params", str], None]


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm: its ``params.algorithm`` name, its class as ``"module:Class"``, and its params checks.

    ``meta_trains``: False for a baseline whose outer step changes nothing (finetune), which a step
    budget must not stretch."""

    name: str
    target: str
    checks: tuple[Check, ...] = ()
    meta_trains: bool = True

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    @property
    def class_name(self) -> str:
        return self.target.split(":")[1]

    def check(self, params: Params, prefix: str = "") -> None:
        """Raise :class:`ConfigError` naming the key for a setting this algorithm cannot train with."""
        for check in self.checks:
            check(params, prefix)


def needs_query(params: Params, prefix: str = "") -> None:
    """The meta-gradient is the query loss after adaptation: an episode without query examples has none."""
    if params.k_query < 1:
        raise ConfigError(
            f"{params.algorithm} learns from the query loss after adaptation; set '{prefix}k_query' to 1 or more, "
            f"got {shown(params.k_query)}."
        )


def lopt_starting_rule(params: Params, prefix: str = "") -> None:
    """learned_optimizer starts its rule as inner_optimizer at inner_lr (LoptConfig's init_rule, init_lr)."""
    if not params.inner_lr > 0:
        raise ConfigError(
            f"learned_optimizer starts its update rule as {params.inner_optimizer} at inner_lr; "
            f"'{prefix}inner_lr' must be above 0, got {shown(params.inner_lr)}."
        )


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("reptile", "kshot.algorithms.reptile:Reptile"),
        AlgorithmSpec("fomaml", "kshot.algorithms.maml:FOMAML", (needs_query,)),
        AlgorithmSpec("maml", "kshot.algorithms.maml:MAML", (needs_query,)),
        AlgorithmSpec("metasgd", "kshot.algorithms.metasgd:MetaSGD", (needs_query,)),
        AlgorithmSpec("anil", "kshot.algorithms.anil:ANIL", (needs_query,)),
        AlgorithmSpec("finetune", "kshot.algorithms.finetune:Finetune", meta_trains=False),
        AlgorithmSpec("transfer", "kshot.algorithms.transfer:Transfer"),
        AlgorithmSpec("protonet", "kshot.algorithms.protonet:ProtoNet"),
        AlgorithmSpec("matchnet", "kshot.algorithms.matchnet:MatchingNet"),
        AlgorithmSpec("relationnet", "kshot.algorithms.relationnet:RelationNet"),
        AlgorithmSpec("siamese", "kshot.algorithms.siamese:Siamese"),
        AlgorithmSpec(
            "learned_optimizer",
            "kshot.algorithms.learned_optimizer:LearnedOptimizerAlgorithm",
            (needs_query, lopt_starting_rule),
        ),
    )
}


def algorithm_names() -> list[str]:
    """Every ``params.algorithm`` value, in registry order."""
    return list(ALGORITHMS)


def algorithm_spec(name: str, key: str | None = None) -> AlgorithmSpec:
    """The spec of ``name``; if unknown, a :class:`ConfigError` naming the closest name (and ``key``, if given)."""
    spec = ALGORITHMS.get(name)
    if spec is None:
        raise ConfigError((f"{key}: " if key else "") + unknown_choice("algorithm", name, algorithm_names()))
    return spec


__all__ = ["ALGORITHMS", "AlgorithmSpec", "algorithm_names", "algorithm_spec", "lopt_starting_rule", "needs_query"]
