"""Base of the algorithms whose inner loop is functional: θ′ lives in a ParamDict beside the model.

The model's own Parameters stay the meta-parameters θ; ``adapt`` sets ``self.adapted`` (θ′),
``predict`` runs the model on θ′ with ``functional_call``, ``reset`` forgets θ′.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..data import TaskExamples, length_sorted_batches
from ..errors import ModelError
from .base import NEW_CLASSES_KEY, MetaAlgorithm, autocast
from .functional import ParamDict, logits_in_batches


class ParamDictAlgorithm(MetaAlgorithm):
    adapted: ParamDict | None = None

    def reset(self) -> None:
        self.adapted = None

    def predict(self, task: TaskExamples, batch_size: int) -> np.ndarray:
        if self.adapted is None:
            return super().predict(task, batch_size)
        was_training = self.model.training
        self.model.eval()
        with autocast(self.accelerator):
            logits = logits_in_batches(
                self.model,
                self.adapted,
                length_sorted_batches(task, batch_size, self.pad_token_id),
                len(task),
                self.model.config.num_labels,
                self.device,
            )
        self.model.train(was_training)
        return logits.numpy()

    def export_model(self, adapted: bool = False):
        if not adapted or self.adapted is None:
            self.reset()
            return self.model
        # Once per saved model (never per task): a copy holding θ′, so the model itself keeps θ.
        model = copy.deepcopy(self.model)
        named = dict(model.named_parameters())
        resized = {n: v for n, v in self.adapted.items() if v.shape != named[n].shape}
        with torch.no_grad():
            for n, value in self.adapted.items():
                if n not in resized:
                    named[n].copy_(value)
        if resized:  # new classes: the task's N-row head replaces the one meta-learned row
            self._export_task_head(model, resized)
        return model

    def _export_task_head(self, model, resized: ParamDict) -> None:
        from ..models.pooling import set_classifier

        weights = [n for n in resized if n.endswith(".weight")]
        if len(weights) != 1 or any(not n.startswith(weights[0][: -len("weight")]) for n in resized):
            raise ModelError(f"Cannot save a task head made of {sorted(resized)}: expected one Linear layer.")
        prefix = weights[0][: -len(".weight")]
        weight = resized[weights[0]]
        bias = resized.get(f"{prefix}.bias", torch.zeros(weight.shape[0]))
        names = self.adapted_labels or [f"LABEL_{i}" for i in range(weight.shape[0])]
        set_classifier(model, weight.detach().float(), bias.detach().float(), list(names))
        setattr(model.config, NEW_CLASSES_KEY, False)
