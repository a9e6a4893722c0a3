"""ANIL, "almost no inner loop" (Raghu et al., 2020): MAML whose inner loop adapts only the
classification head; the body is meta-trained in the outer loop (it gets gradients through the
head's adaptation) and is left as it is at adaptation time.

The head is every trainable weight outside the model's ``base_model_prefix`` (see
:func:`kshot.algorithms.functional.head_names`), so any AutoModelForSequenceClassification works.
``params.first_order`` and ``params.second_order_steps`` apply as in maml.

Because the body does not change in the inner loop, its output on the support set is computed
once per task and the inner steps run the head alone on it: an inner step costs a few small matrix
products instead of a forward and backward pass through the whole model, so a task adapts in one
body pass however many inner steps it takes. That needs the head to be one module fed the body's
output (``classifier`` in BERT, RoBERTa, ELECTRA, ...); a model whose head is spread over several
modules (DistilBERT's ``pre_classifier`` + ``classifier``) runs the whole model every step. The one
difference from running the model every step: the body's dropout mask is drawn once per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from ..data import TaskExamples, collate
from .base import autocast, support_indices, to_device
from .functional import ParamDict, cross_entropy, head_names, inner_loop, logits_of
from .gradient import GradientMetaLearner


class ANIL(GradientMetaLearner):
    name = "anil"

    def __init__(self, model, params, accelerator, pad_token_id):
        self.head = head_names(model)
        super().__init__(model, params, accelerator, pad_token_id)
        modules = {n.split(".")[0] for n in self.head}
        self.head_module_name = modules.pop() if len(modules) == 1 else None

    def adapt_names(self) -> list[str]:
        return self.head

    def inner(self, support: TaskExamples, steps: int, seed: int, track_meta: bool) -> tuple[ParamDict, list[float]]:
        if self.head_module_name is None:
            return super().inner(support, steps, seed, track_meta)
        p = self.params
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.model.train()
        params = dict(self.meta)
        if not track_meta:
            params = {n: t.detach() for n, t in params.items()}
        with torch.set_grad_enabled(track_meta), autocast(self.accelerator):
            features = self.head_inputs(params, to_device(collate(support.input_ids, self.pad_token_id), self.device))
        labels = torch.as_tensor(support.labels, device=self.device)
        head = self.model.get_submodule(self.head_module_name)
        prefix = len(self.head_module_name) + 1

        def head_loss(current: ParamDict, idx: Any, keep: bool) -> torch.Tensor:
            local = {n[prefix:]: current[n] for n in self.head}
            logits = functional_call(head, local, (features[idx],))
            return cross_entropy(logits, labels[idx])

        return inner_loop(
            self.model, params, support_indices(len(support), steps, p.inner_batch_size, rng), self.inner_lr(),
            self.update, self.head, second_order=self.second_order(steps), track_meta=track_meta,
            max_grad_norm=p.max_grad_norm, loss_fn=head_loss,
        )

    def head_inputs(self, params: ParamDict, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the body feeds the head for ``batch`` (with weights ``params``), captured by a hook.

        Never checkpointed: a recomputed forward pass would not reproduce the captured tensor's graph,
        and the support set is small."""
        captured: list[torch.Tensor] = []
        hook = self.model.get_submodule(self.head_module_name).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            logits_of(self.model, params, batch)
        finally:
            hook.remove()
        return captured[0]
