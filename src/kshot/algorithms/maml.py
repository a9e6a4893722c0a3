"""MAML (Finn et al., 2017) and first-order MAML.

MAML differentiates the query loss at the adapted weights θ′ back through the inner loop to the
initialisation θ, second-order terms included; ``params.first_order`` drops them and
``params.second_order_steps`` keeps them only through the last n inner steps. First-order MAML
treats every inner gradient as a constant, so its meta-gradient is the query-loss gradient at θ′.
The machinery is in :mod:`kshot.algorithms.gradient` and :mod:`kshot.algorithms.functional`.
"""

from __future__ import annotations

from .gradient import GradientMetaLearner


class MAML(GradientMetaLearner):
    name = "maml"


class FOMAML(GradientMetaLearner):
    name = "fomaml"

    def second_order(self, steps: int) -> bool:
        return False
