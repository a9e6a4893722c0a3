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
from .functional import ParamDict, cross_entropy, head_names, inner_loop, logits_of
from .gradient import GradientMetaLearner


class ANIL(GradientMetaLearner):
    name = "anil"

    def __init__(self, model, params, accelerator, pad_token_id):
        self.head = head_names(model)
        super().__init__(model, params, accelerator, pad_token_id)
        modules = {n.split(".")[0] for n in self.head}
        self.head_module_name = modules.pop() if len(modules) == 1 else None
        if params.anil_head_init == "prototypes":
            head = model.get_submodule(self.head_module_name) if self.head_module_name else None
            if not isinstance(head, torch.nn.Linear):
                raise ConfigError(
                    f"params.anil_head_init='prototypes' needs a head that is one Linear layer fed the body's output; "
                    f"{type(model).__name__}'s head is {sorted(self.head)}. Use anil_head_init='meta' with this model."
                )

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
        # The body ran under autocast (bf16 features under mixed precision); the head's inner steps run
        # outside it, on features in the weights' dtype, so the head, its updates and the prototypes keep
        # the master weights' precision (float32).
        features = features.to(params[self.head[0]].dtype)
        labels = torch.as_tensor(support.labels, device=self.device)
        head = self.model.get_submodule(self.head_module_name)
        prefix = len(self.head_module_name) + 1
        if p.anil_head_init == "prototypes":
            params.update(self.prototype_head(params, features, labels))

        def head_loss(current: ParamDict, idx: Any, keep: bool) -> torch.Tensor:
            local = {n[prefix:]: current[n] for n in self.head}
            logits = functional_call(head, local, (features[idx],))
            return cross_entropy(logits, labels[idx])

        return inner_loop(
            self.model,
            params,
            support_indices(len(support), steps, p.inner_batch_size, rng),
            self.inner_lr(),
            self.update,
            self.head,
            second_order=self.second_order(steps),
            track_meta=track_meta,
            max_grad_norm=p.max_grad_norm,
            loss_fn=head_loss,
        )

    def prototype_head(self, params: ParamDict, features: torch.Tensor, labels: torch.Tensor) -> ParamDict:
        """The meta-learned head plus the prototype head of ``features`` (see the module docstring).

        A class absent from the support set has a zero mean, so it keeps the meta-learned row alone."""
        weight_name, bias_name = f"{self.head_module_name}.weight", f"{self.head_module_name}.bias"
        weight = params[weight_name]
        one_hot = torch.nn.functional.one_hot(labels, weight.shape[0]).to(features.dtype)
        means = ((one_hot.T @ features) / one_hot.sum(0).clamp(min=1).unsqueeze(1)).to(weight.dtype)
        scale = self.params.anil_prototype_scale
        out = {weight_name: weight + 2 * scale * means}
        if bias_name in params:
            out[bias_name] = params[bias_name] - scale * means.pow(2).sum(1)
        return out

    def head_inputs(self, params: ParamDict, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the body feeds the head for ``batch`` (with weights ``params``), captured by a hook.

        Never checkpointed: a recomputed forward pass would not reproduce the captured tensor's graph,
        and the support set is small."""
        captured: list[torch.Tensor] = []
        hook = self.model.get_submodule(self.head_module_name).register_forward_pre_hook(
            lambda _m, args: captured.append(args[0])
        )
        try:
            logits_of(self.model, params, batch)
        finally:
            hook.remove()
        return captured[0]
