"""The wrapper shared by the gradient-based meta-learners (maml, fomaml, metasgd, anil).

The model's own Parameters are the initialisation θ and are never overwritten by an inner loop: a
task's adapted weights θ′ live in a :data:`~kshot.algorithms.functional.ParamDict` computed by
:func:`~kshot.algorithms.functional.inner_loop`, the query loss at θ′ is differentiated back to θ
(and to any other meta-learned tensor), and an Adam step at ``params.meta_lr`` moves θ. ``adapt``
keeps θ′ beside the model and ``predict`` runs the model on it, so ``reset`` is just forgetting θ′.

Subclasses change the method through four hooks: :meth:`adapt_names` (which weights the inner loop
updates), :meth:`inner_lr` (a float or learned per-weight rates), :meth:`second_order` (which inner
steps keep their graph) and :meth:`outer_groups` (what the outer Adam optimizes, at which rate);
``self.update`` is the inner update rule, the place for a learned optimizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..data import Episode, TaskExamples, collate
from ..errors import ConfigError
from .adapted_params import ParamDictAlgorithm
from .base import autocast, support_batches, to_device
from .functional import (
    LearningRate,
    ParamDict,
    head_names,
    inner_loop,
    logits_of,
    make_inner_update,
    query_gradients,
    recomputed_meta_gradients,
    trainable_names,
    weights_of,
)
from .heads import episode_head
from .loss_scale import LossScaler
from .shared_state import sum_across_processes

logger = logging.getLogger(__name__)


class GradientMetaLearner(ParamDictAlgorithm):
    """MAML (Finn et al., 2017) and the methods that differ from it by a hook."""

    name = "maml"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        self.checkpointed = params.gradient_checkpointing
        if self.checkpointed:
            # Hugging Face's per-layer checkpointing recomputes with the module's own weights, not θ′;
            # the functional forward pass is checkpointed as a whole instead (functional.logits_of).
            # That drops the forward activations of the query pass and of first-order inner steps. Second-order
            # steps over the whole model (maml, metasgd) are recomputed one at a time in the backward pass
            # (recomputes_steps), so one step's double-backward graph is held instead of every step's.
            disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            disable()
        self.names = trainable_names(model)
        self.meta = weights_of(model, self.names)
        self.head = head_names(model)
        modules = {n.split(".")[0] for n in self.head}
        self.head_module_name = modules.pop() if len(modules) == 1 else None
        if self.new_classes:
            self._check_new_class_head()
        self.update = make_inner_update(params.inner_optimizer)
        # fp16 only: the inner loop's and the query's gradients are taken of a scaled loss (loss_scale.py).
        self.loss_scaler = LossScaler.for_accelerator(accelerator)
        self.adapted: ParamDict | None = None
        groups = self.outer_groups()
        self.outer_optimizer = torch.optim.Adam(groups)
        for group in self.outer_optimizer.param_groups:
            group["base_lr"] = group["lr"]

    # ------------------------------------------------------------------ hooks
    def adapt_names(self) -> list[str] | None:
        """Weights the inner loop updates; None = every meta-learned weight."""
        return None

    def inner_lr(self) -> LearningRate:
        return self.params.inner_lr

    def second_order(self, steps: int) -> bool | Callable[[int], bool]:
        """Which of ``steps`` inner steps keep their graph: params.first_order / second_order_steps."""
        p = self.params
        if p.first_order:
            return False
        if p.second_order_steps is None or p.second_order_steps >= steps:
            return True
        first = steps - p.second_order_steps
        return lambda i: i >= first

    def outer_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the outer Adam; every tensor in them receives a meta-gradient."""
        return [{"params": list(self.meta.values()), "lr": self.params.meta_lr}]

    def extra_state(self) -> dict[str, Any]:
        """Meta-learned state besides θ (saved in checkpoints)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    # ------------------------------------------------------------------ new classes
    def _check_new_class_head(self) -> None:
        head = self.model.get_submodule(self.head_module_name) if self.head_module_name else None
        if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
            raise ConfigError(
                f"New classes need a head that is one Linear layer with one meta-learned row (the trainer builds "
                f"it); {type(self.model).__name__}'s head is {sorted(self.head)}."
            )

    def with_task_head(
        self, weights: ParamDict, support: TaskExamples, track_meta: bool, features: torch.Tensor | None = None
    ) -> ParamDict:
        """``weights`` with the one-row head replaced by the episode's N-row starting head (see heads.py).

        ``features``: the support set's head inputs when the caller has them (anil), else computed here
        with ``weights`` when the rule needs them."""
        p = self.params
        weight_name, bias_name = f"{self.head_module_name}.weight", f"{self.head_module_name}.bias"
        n = int(support.labels.max()) + 1
        labels = torch.as_tensor(support.labels, device=self.device)
        if p.new_class_head == "prototypes" and features is None:
            batch = to_device(collate(support.input_ids, self.pad_token_id), self.device)
            source = weights if track_meta else {k: v.detach() for k, v in weights.items()}
            # The body's support pass joins the inner loop's graph: with second-order steps it is differentiated
            # twice, which the fused attention kernels cannot do.
            twice = track_meta and bool(self.second_order(p.inner_steps))
            with torch.set_grad_enabled(track_meta), autocast(self.accelerator):
                features = self.head_inputs(source, batch, double_backward=twice)
        if features is not None:
            features = features.to(weights[weight_name].dtype)
        weight, bias = episode_head(
            p.new_class_head, weights[weight_name], weights.get(bias_name), n, features, labels, p.new_class_head_scale
        )
        out = dict(weights)
        out[weight_name] = weight
        if bias is not None:
            out[bias_name] = bias
        return out

    def head_inputs(
        self, weights: ParamDict, batch: dict[str, torch.Tensor], double_backward: bool = False
    ) -> torch.Tensor:
        """What the body feeds the head for ``batch`` (run with ``weights``), captured by a hook.

        Never checkpointed: a recomputed forward pass would not reproduce the captured tensor's graph,
        and the support set is small."""
        captured: list[torch.Tensor] = []
        hook = self.model.get_submodule(self.head_module_name).register_forward_pre_hook(
            lambda _m, args: captured.append(args[0])
        )
        try:
            logits_of(self.model, weights, batch, double_backward=double_backward)
        finally:
            hook.remove()
        return captured[0]

    # ------------------------------------------------------------------ inner loop
    def meta_tensors(self) -> list[torch.Tensor]:
        return [t for group in self.outer_optimizer.param_groups for t in group["params"]]

    def inner_inputs(
        self, support: TaskExamples, steps: int, seed: int, track_meta: bool
    ) -> tuple[Iterator[dict[str, torch.Tensor]], ParamDict]:
        """The support batches of ``steps`` inner steps and the starting weights (a new-class task's own head).
        ``seed`` sets the randomness: the batches' order and, from here on, the dropout masks."""
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        batches = (
            to_device(b, self.device)
            for b in support_batches(support, steps, self.params.inner_batch_size, self.pad_token_id, rng)
        )
        self.model.train()
        start = self.with_task_head(self.meta, support, track_meta) if self.new_classes else self.meta
        return batches, start

    def inner(self, support: TaskExamples, steps: int, seed: int, track_meta: bool) -> tuple[ParamDict, list[float]]:
        """θ′ after ``steps`` inner steps on ``support``; its randomness (batch order, dropout) is ``seed``'s."""
        p = self.params
        batches, start = self.inner_inputs(support, steps, seed, track_meta)
        return inner_loop(
            self.model,
            start,
            batches,
            self.inner_lr(),
            self.update,
            self.adapt_names(),
            second_order=self.second_order(steps),
            track_meta=track_meta,
            max_grad_norm=p.max_grad_norm,
            checkpointed=self.checkpointed,
            autocast=lambda: autocast(self.accelerator),
            scaler=self.loss_scaler,
        )

    def recomputes_steps(self) -> bool:
        """With gradient checkpointing, second-order steps over the whole model are recomputed one at a time in
        the backward pass (functional.recomputed_meta_gradients), so memory holds one step's graph, not all."""
        p = self.params
        return self.checkpointed and p.inner_steps > 0 and not p.first_order and self.adapt_names() is None

    def recomputed_gradients(
        self, support: TaskExamples, query: dict[str, torch.Tensor], seed: int, wrt: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], float, list[float]]:
        """One task's meta-gradient by :func:`~.functional.recomputed_meta_gradients`: the inner loop of
        :meth:`inner` (same batches, same random numbers), differentiated step by step."""
        p = self.params
        batches, start = self.inner_inputs(support, p.inner_steps, seed, track_meta=True)
        return recomputed_meta_gradients(
            self.model,
            start,
            list(batches),
            self.inner_lr(),
            self.update,
            query,
            wrt,
            second_order=self.second_order(p.inner_steps),
            max_grad_norm=p.max_grad_norm,
            checkpointed=self.checkpointed,
            autocast=lambda: autocast(self.accelerator),
            scaler=self.loss_scaler,
        )

    def meta_gradients(
        self, episodes: Sequence[Episode], total_tasks: int
    ) -> tuple[list[torch.Tensor], dict[str, float]]:
        """Mean over all processes' tasks of ∂ L_query(θ′) / ∂ meta_tensors(), and the mean losses.

        Gradients and loss sums travel in one collective; every process ends with the same values
        (so identical parameters), even one that had no task this step.
        """
        wrt = self.meta_tensors()
        total = [torch.zeros_like(w) for w in wrt]
        # Query loss sum, query tasks, support loss sum, support steps; in the gradients' dtype, so
        # the flat collective is not promoted to another.
        stats = torch.zeros(4, dtype=wrt[0].dtype, device=self.device)
        for ep in episodes:
            if len(ep.query) == 0:
                raise ConfigError(
                    f"{self.name} learns from the query loss after adaptation, but the episodes have no query examples;"
                    " set params.k_query to 1 or more."
                )
            query = to_device(collate(ep.query.input_ids, self.pad_token_id, ep.query.labels), self.device)
            if self.recomputes_steps():
                grads, loss, losses = self.recomputed_gradients(ep.support, query, ep.seed, wrt)
            else:
                adapted, losses = self.inner(ep.support, self.params.inner_steps, ep.seed, track_meta=True)
                grads, loss = query_gradients(
                    self.model,
                    adapted,
                    query,
                    wrt,
                    self.checkpointed,
                    lambda: autocast(self.accelerator),
                    self.loss_scaler,
                )
            torch._foreach_add_(total, grads)
            stats += torch.tensor([loss, 1.0, sum(losses), len(losses)], dtype=stats.dtype, device=self.device)
        *total, stats = sum_across_processes(self.accelerator, total + [stats])
        torch._foreach_div_(total, float(total_tasks))
        q_sum, q_n, s_sum, s_n = stats.tolist()
        metrics = {"loss": q_sum / q_n if q_n else float("nan")}
        if s_n:
            metrics["support_loss"] = s_sum / s_n
        return total, metrics

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        """One Adam step on the mean meta-gradient; ``loss`` is the query loss after adaptation."""
        grads, metrics = self.meta_gradients(episodes, total_tasks)
        applies = self.loss_scaler.step_applies(grads)  # fp16: an overflowed meta-gradient is skipped
        if self.loss_scaler.enabled:
            metrics["loss_scale"] = self.loss_scaler.value
        if not applies:
            self.reset()
            return metrics
        for tensor, grad in zip(self.meta_tensors(), grads):
            tensor.grad = grad
        for group in self.outer_optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
        self.outer_optimizer.step()
        self.outer_optimizer.zero_grad(set_to_none=True)
        self.reset()
        return metrics

    # ------------------------------------------------------------------ few-shot use
    def adapt(self, support: TaskExamples, steps: int, seed: int = 0) -> dict[str, float]:
        """The same inner loop as in meta-training (same update rule, same rates), without a graph."""
        self.adapted, losses = self.inner(support, steps, seed, track_meta=False)
        self.adapted_labels = support.label_names
        return {"loss": float(np.mean(losses)) if losses else float("nan")}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "meta": [p.detach().cpu().clone() for p in self.model.parameters()],
            "outer_optimizer": self.outer_optimizer.state_dict(),
            **({"loss_scale": self.loss_scaler.state_dict()} if self.loss_scaler.enabled else {}),
            **self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, value in zip(self.model.parameters(), state["meta"]):
                p.copy_(value.to(p.device))
        if state.get("outer_optimizer"):
            self.outer_optimizer.load_state_dict(state["outer_optimizer"])
            for group in self.outer_optimizer.param_groups:
                group.setdefault("base_lr", group["lr"])
        self.loss_scaler.load_state_dict(state.get("loss_scale"))
        self.load_extra_state(state)
        self.reset()
