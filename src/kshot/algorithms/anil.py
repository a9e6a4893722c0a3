"""ANIL, "almost no inner loop" (Raghu et al., 2020): MAML whose inner loop adapts only the
classification head; the body is meta-trained in the outer loop (it gets gradients through the
head's adaptation) and is left as it is at adaptation time.

The head is every trainable weight outside the model's ``base_model_prefix`` (see
:func:`kshot.algorithms.functional.head_names`), so any AutoModelForSequenceClassification works.
``params.first_order`` and ``params.second_order_steps`` apply as in maml.
"""

from __future__ import annotations

from .functional import head_names
from .gradient import GradientMetaLearner


class ANIL(GradientMetaLearner):
    name = "anil"

    def __init__(self, model, params, accelerator, pad_token_id):
        self.head = head_names(model)
        super().__init__(model, params, accelerator, pad_token_id)

    def adapt_names(self) -> list[str]:
        return self.head
