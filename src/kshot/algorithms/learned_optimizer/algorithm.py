"""``learned_optimizer``: meta-learn the inner loop's update rule together with the initialisation.

The model's own Parameters are the initialisation θ; a task's adapted weights θ′ live in a dict beside
the model (``predict`` runs the model on them), so ``reset`` just forgets θ′. Each outer step
unrolls the learned optimizer for ``inner_steps`` on every task's support set, differentiates the
query loss at θ′ w.r.t. the optimizer's weights φ and θ (see :mod:`.unroll`), and takes one Adam
step on each: θ at ``meta_lr``, φ at ``lopt_lr``. A non-finite meta-gradient skips the step.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...config.algorithms import algorithm_spec
from ...data import Episode, TaskExamples, length_sorted_batches
from ...errors import ConfigError
from ...models import read_kshot_meta
from ..adapted_params import ParamDictAlgorithm
from ..base import reduce_mean, support_batches, to_device
from ..functional import trainable_names, weights_of
from ..heads import episode_head
from ..loss_scale import refuse_unscaled_fp16
from ..shared_state import sum_across_processes
from ..task_head import TaskHead
from .network import LearnedOptimizer, LoptConfig
from .persistence import has_lopt, load_lopt, lopt_files, lopt_from_state, lopt_state
from .unroll import UnrollOptions, adapt_weights, meta_gradients, model_loss_fn

logger = logging.getLogger(__name__)


def check_params(params) -> None:
    """Refuse settings this algorithm cannot train with.

    The checks live with ``Params.validate`` (the ranges of the ``lopt_*`` fields, and this algorithm's
    own in :mod:`kshot.config.algorithms`), so a params file or request body is refused when it arrives;
    they run again here for params built in code without ``from_dict`` (whatever their ``algorithm``).
    """
    params.validate("params.")
    algorithm_spec(LearnedOptimizerAlgorithm.name).check(params, "params.")


def lopt_config(params) -> LoptConfig:
    try:
        return LoptConfig(
            kind=params.lopt_kind,
            hidden=params.lopt_hidden,
            max_step=params.lopt_max_step,
            init_rule=params.inner_optimizer,
            init_lr=params.inner_lr,
            per_tensor_scales=params.lopt_per_tensor_scales,
        )
    except ConfigError as err:
        raise ConfigError(f"params (lopt_kind, lopt_hidden, lopt_max_step, inner_lr): {err}") from None


class LearnedOptimizerAlgorithm(ParamDictAlgorithm):
    name = "learned_optimizer"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        check_params(params)
        self.names = trainable_names(model)
        self.meta = weights_of(model, self.names)
        if params.gradient_checkpointing:
            # Hugging Face's per-layer checkpointing would recompute with the module's own weights, not
            # the unrolled ones; the functional forward pass is checkpointed as a whole instead.
            disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            disable()
        self.loss_fn = model_loss_fn(model, accelerator, checkpointed=params.gradient_checkpointing)
        self.adapted: dict[str, torch.Tensor] | None = None
        self.task_head: TaskHead | None = None  # new classes: builds each task's starting head
        if params.lopt_path:
            self._set_lopt(load_lopt(params.lopt_path))
            logger.info("Starting from the learned optimizer in %s.", params.lopt_path)
        else:
            self._set_lopt(LearnedOptimizer(lopt_config(params), self.names))

    @property
    def options(self) -> UnrollOptions:
        p = self.params
        return UnrollOptions(
            first_order=p.first_order,
            truncate=p.lopt_truncate,
            checkpoint_segment=p.lopt_checkpoint_segment,
            checkpoint_network=p.lopt_checkpoint_segment > 0,
            path_loss_weight=p.lopt_path_loss_weight,
        )

    def _set_lopt(self, lopt: LearnedOptimizer) -> None:
        """Use ``lopt`` (scales for this model's tensors added) and build fresh outer optimizers."""
        lopt.add_tensor_names(self.names)
        self.lopt = lopt.to(self.device)
        self.init_optimizer = (
            torch.optim.Adam(list(self.meta.values()), lr=self.params.meta_lr) if self.params.lopt_meta_init else None
        )
        self.lopt_optimizer = torch.optim.Adam(self.lopt.parameters(), lr=self.params.lopt_lr)

    # ------------------------------------------------------------------ batches
    def _support(self, support: TaskExamples, steps: int, seed: int) -> list[dict[str, torch.Tensor]]:
        torch.manual_seed(seed)  # dropout masks: a function of the episode, not of the process
        rng = np.random.default_rng(seed)
        return [
            to_device(b, self.device)
            for b in support_batches(support, steps, self.params.inner_batch_size, self.pad_token_id, rng)
        ]

    def _query(self, query: TaskExamples) -> list[tuple[dict[str, torch.Tensor], float]]:
        chunks = []
        for idx, batch in length_sorted_batches(query, self.params.eval_batch_size, self.pad_token_id):
            chunks.append((to_device(batch, self.device), len(idx) / len(query)))
        return chunks

    # ------------------------------------------------------------------ new classes
    def _task_init(self, support: TaskExamples) -> dict[str, torch.Tensor]:
        """θ, with a new-class model's one-row head replaced by the task's N-row start (heads.py). The start
        is a constant of the unroll here: the row's meta-gradient is the sum of the rows' (Unicorn-MAML), and
        the prototypes' path into the body is not differentiated (first order in the prototypes)."""
        if not self.new_classes:
            return self.meta
        if self.task_head is None:
            self.task_head = TaskHead(self.model, self.params, self.pad_token_id, self.device, self.accelerator)
        p, row = self.params, self.task_head.meta_head
        labels = torch.as_tensor(support.labels, device=self.device)
        features = self.task_head.features(support) if p.new_class_head == "prototypes" else None
        with torch.no_grad():
            weight, bias = episode_head(
                p.new_class_head,
                row.weight,
                row.bias,
                int(support.labels.max()) + 1,
                features,
                labels,
                p.new_class_head_scale,
            )
        init = dict(self.meta)
        name = self.task_head.module_name
        init[f"{name}.weight"] = weight.contiguous()
        if bias is not None:
            init[f"{name}.bias"] = bias.contiguous()
        return init

    def _row_grad(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        """The meta-gradient of θ's tensor ``name`` from the task's: summed over a new-class head's rows."""
        if self.new_classes and grad.shape != self.meta[name].shape:
            return (
                grad.sum(0, keepdim=True) if self.params.new_class_head != "zero" else torch.zeros_like(self.meta[name])
            )
        return grad

    # ------------------------------------------------------------------ meta-training
    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        p = self.params
        refuse_unscaled_fp16(self.accelerator, self.name)
        self.model.train()
        init_grads = [torch.zeros_like(t) for t in self.meta.values()]
        lopt_grads = [torch.zeros_like(t) for t in self.lopt.parameters()]
        support_losses, query_losses = [], []
        for ep in episodes:
            init = self._task_init(ep.support)
            support = self._support(ep.support, p.inner_steps, ep.seed)
            result = meta_gradients(
                self.lopt,
                self.loss_fn,
                init,
                support,
                self._query(ep.query),
                self.options,
                want_init=p.lopt_meta_init,
            )
            if result.init is not None:
                torch._foreach_add_(init_grads, [self._row_grad(n, g) for n, g in result.init.items()])
            torch._foreach_add_(lopt_grads, result.lopt)
            support_losses.append(result.support_loss)
            query_losses.append(result.query_loss)
        grads = sum_across_processes(self.accelerator, init_grads + lopt_grads)
        torch._foreach_div_(grads, float(total_tasks))
        applied = self.apply_meta_gradients(grads[: len(init_grads)], grads[len(init_grads) :], lr_scale, step)
        self.reset()
        metrics = {
            "loss": float(np.mean(query_losses)),
            "support_loss": float(np.mean(support_losses)) if p.inner_steps else float("nan"),
        }
        metrics = reduce_mean(self.accelerator, metrics)
        metrics["skipped"] = 0.0 if applied else 1.0
        metrics["lopt_lr"] = math.exp(float(self.lopt.log_lr.detach()))
        return metrics

    def apply_meta_gradients(
        self, init_grads: list[torch.Tensor], lopt_grads: list[torch.Tensor], lr_scale: float = 1.0, step: int = -1
    ) -> bool:
        """One Adam step on θ and on φ; False (nothing changed, a warning logged) if any gradient is
        NaN or infinite, which would otherwise poison every later step."""
        everything = list(init_grads) + list(lopt_grads)
        finite = bool(torch.stack([torch.isfinite(g).all() for g in everything]).all()) if everything else True
        if not finite:
            bad = [
                n
                for n, g in zip(self.names + [n for n, _ in self.lopt.named_parameters()], everything)
                if not torch.isfinite(g).all()
            ]
            logger.warning(
                "learned_optimizer step %d: non-finite meta-gradient in %s; the update is skipped.",
                step + 1,
                ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""),
            )
            return False
        pairs = [
            (self.init_optimizer, list(self.meta.values()), init_grads, self.params.meta_lr),
            (self.lopt_optimizer, list(self.lopt.parameters()), lopt_grads, self.params.lopt_lr),
        ]
        for optimizer, tensors, grads, lr in pairs:
            if optimizer is None:
                continue
            for tensor, grad in zip(tensors, grads):
                tensor.grad = grad.to(tensor.dtype)
            if self.params.lopt_meta_grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(tensors, self.params.lopt_meta_grad_clip)
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_scale
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return True

    # ------------------------------------------------------------------ few-shot use
    def adapt(self, support: TaskExamples, steps: int, seed: int = 0) -> dict[str, float]:
        """The learned optimizer's inner loop from θ, without a graph; θ′ is kept for ``predict``."""
        init = self._task_init(support)
        batches = self._support(support, steps, seed)
        self.model.train()
        self.adapted, losses = adapt_weights(self.lopt, self.loss_fn, init, batches)
        self.adapted_labels = support.label_names
        return {"loss": float(np.mean(losses)) if losses else float("nan")}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "meta": [t.detach().cpu().clone() for t in self.meta.values()],
            "lopt": lopt_state(self.lopt),
            # One key for both optimizers: the trainer leaves "outer_optimizer" out of best-model copies.
            # Copied: an optimizer's state_dict shares its moment tensors, which the next step updates.
            "outer_optimizer": copy.deepcopy(
                {
                    "init": self.init_optimizer.state_dict() if self.init_optimizer is not None else None,
                    "lopt": self.lopt_optimizer.state_dict(),
                }
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for t, value in zip(self.meta.values(), state["meta"]):
                t.copy_(value.to(t.device))
        if "lopt" in state:
            saved = state["lopt"]
            if saved["config"] == self.lopt.config.to_dict() and list(saved["tensor_names"]) == self.lopt.scale_names:
                self.lopt.load_state_dict({k: v.to(self.device) for k, v in saved["weights"].items()})
            else:
                self._set_lopt(lopt_from_state(saved))
        outer = state.get("outer_optimizer") or {}
        if outer.get("init") and self.init_optimizer is not None:
            self.init_optimizer.load_state_dict(outer["init"])
        if outer.get("lopt"):
            self.lopt_optimizer.load_state_dict(outer["lopt"])
        self.reset()

    def initial_state(self) -> dict[str, Any]:
        return {"meta": [t.detach().clone() for t in self.meta.values()]}

    def load_pretrained(self, model_dir: str) -> None:
        """θ from the loaded model; the learned optimizer from ``params.lopt_path`` or ``model_dir``."""
        self.load_state_dict(self.initial_state())
        source = self.params.lopt_path or model_dir
        if not self.params.lopt_path and not has_lopt(model_dir):
            trained_with = (read_kshot_meta(model_dir) or {}).get("algorithm")
            if trained_with == self.name:
                load_lopt(model_dir)  # raises: the files this model was saved with are gone
            logger.warning(
                "%s holds no learned optimizer: adapting with the untrained rule (%s at inner_lr).",
                model_dir,
                self.params.inner_optimizer,
            )
            return
        self._set_lopt(load_lopt(source))

    def extra_files(self) -> dict[str, Any]:
        return lopt_files(self.lopt)
