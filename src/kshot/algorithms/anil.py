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
difference from running the model every step: the body's dropout mask is drawn once per task (none
with ``params.dropout = 0``, which also spares the masks' cost, about 15 % of a meta-step on CPU).

``params.anil_head_init = "prototypes"`` starts each task's head from the meta-learned head plus
the prototype head of Proto-MAML (Triantafillou et al., 2020): with μ_c the mean support feature
of class c and s = ``params.anil_prototype_scale``, row c of the weight gets 2s·μ_c and its bias
−s‖μ_c‖², i.e. the logits of minus s times the squared distance to μ_c (up to a term common to
every class). The support set then decides where the boundary starts (ARSC's t2/t4/t5 tasks share
their texts' domain but not their threshold), while the meta-learned part keeps what all tasks
share, such as the query sets' label imbalance that balanced supports hide. The prototypes are a
function of the body's features, so the body gets a meta-gradient through them as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from ..data import TaskExamples, collate
from ..errors import ConfigError
from .base import autocast, support_indices, to_device
from .embedding import cached_features
from .functional import ParamDict, cross_entropy, inner_loop
from .gradient import GradientMetaLearner


class ANIL(GradientMetaLearner):
    name = "anil"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        if params.anil_head_init == "prototypes" and not self.new_classes:
            head = model.get_submodule(self.head_module_name) if self.head_module_name else None
            if not isinstance(head, torch.nn.Linear):
                raise ConfigError(
                    f"params.anil_head_init='prototypes' needs a head that is one Linear layer fed the body's output; "
                    f"{type(model).__name__}'s head is {sorted(self.head)}. Use anil_head_init='meta' with this model."
                )

    def adapt_names(self) -> list[str]:
        return self.head

    # ------------------------------------------------------------------ evaluation with encoded-once texts
    def caches_features(self) -> bool:
        # New classes only: the cached features are the body's in eval mode, while adaptation on domain
        # tasks has always read them in train mode (one dropout mask per task); that protocol is kept.
        return self.new_classes and self.head_module_name is not None

    def cached_head_inputs(self, task: TaskExamples) -> torch.Tensor:
        """The head inputs of ``task`` under the meta-parameters, each distinct text computed once per evaluation."""
        weights = {n: t.detach() for n, t in self.meta.items()}

        def compute(batch):
            with autocast(self.accelerator):
                return self.head_inputs(weights, to_device(batch, self.device))

        return cached_features(
            task, self.feature_cache, self.params.eval_batch_size, self.pad_token_id, compute, self.model
        )

    def predict(self, task: TaskExamples, batch_size: int) -> np.ndarray:
        if self.feature_cache is None or self.adapted is None:
            return super().predict(task, batch_size)
        features = self.cached_head_inputs(task).to(self.adapted[self.head[0]].dtype)
        prefix = len(self.head_module_name) + 1
        head = self.model.get_submodule(self.head_module_name)
        with torch.no_grad():
            logits = functional_call(head, {n[prefix:]: self.adapted[n] for n in self.head}, (features,))
        return logits.float().cpu().numpy()

    def inner(self, support: TaskExamples, steps: int, seed: int, track_meta: bool) -> tuple[ParamDict, list[float]]:
        if self.head_module_name is None:
            return super().inner(support, steps, seed, track_meta)
        p = self.params
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.model.train()
        weights = dict(self.meta)
        if not track_meta:
            weights = {n: t.detach() for n, t in weights.items()}
        if self.feature_cache is not None and not track_meta:
            features = self.cached_head_inputs(support)
        else:
            with torch.set_grad_enabled(track_meta), autocast(self.accelerator):
                batch = to_device(collate(support.input_ids, self.pad_token_id), self.device)
                features = self.head_inputs(weights, batch)
        # The body ran under autocast (bf16 features under mixed precision); the head's inner steps run
        # outside it, on features in the weights' dtype, so the head, its updates and the prototypes keep
        # the master weights' precision (float32).
        features = features.to(weights[self.head[0]].dtype)
        labels = torch.as_tensor(support.labels, device=self.device)
        head = self.model.get_submodule(self.head_module_name)
        prefix = len(self.head_module_name) + 1
        if self.new_classes:
            weights = self.with_task_head(weights, support, track_meta, features=features)
        elif p.anil_head_init == "prototypes":
            weights.update(self.prototype_head(weights, features, labels))

        def head_loss(current: ParamDict, idx: Any, keep: bool) -> torch.Tensor:
            local = {n[prefix:]: current[n] for n in self.head}
            logits = functional_call(head, local, (features[idx],))
            return cross_entropy(logits, labels[idx])

        return inner_loop(
            self.model,
            weights,
            support_indices(len(support), steps, p.inner_batch_size, rng),
            self.inner_lr(),
            self.update,
            self.head,
            second_order=self.second_order(steps),
            track_meta=track_meta,
            max_grad_norm=p.max_grad_norm,
            loss_fn=head_loss,
        )

    def prototype_head(self, weights: ParamDict, features: torch.Tensor, labels: torch.Tensor) -> ParamDict:
        """The meta-learned head plus the prototype head of ``features`` (see the module docstring).

        A class absent from the support set has a zero mean, so it keeps the meta-learned row alone."""
        weight_name, bias_name = f"{self.head_module_name}.weight", f"{self.head_module_name}.bias"
        weight = weights[weight_name]
        one_hot = torch.nn.functional.one_hot(labels, weight.shape[0]).to(features.dtype)
        means = ((one_hot.T @ features) / one_hot.sum(0).clamp(min=1).unsqueeze(1)).to(weight.dtype)
        scale = self.params.anil_prototype_scale
        out = {weight_name: weight + 2 * scale * means}
        if bias_name in weights:
            out[bias_name] = weights[bias_name] - scale * means.pow(2).sum(1)
        return out
