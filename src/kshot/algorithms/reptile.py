"""Reptile (Nichol et al., 2018): move the initialisation toward the weights adapted on each task.

Functional core: :func:`reptile_delta` and :func:`apply_outer_update`. The wrapper keeps the
meta-parameters apart from the one working model, which is reset in place before every task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data import Episode, TaskExamples
from .base import MetaAlgorithm, query_loss, reduce_mean
from .inner_loop import train_steps
from .shared_state import ParameterState, sum_across_processes
from .task_head import TaskHead


@torch.no_grad()
def reptile_delta(meta: Sequence[torch.Tensor], adapted: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """θ′ − θ for one task."""
    return torch._foreach_sub([a.detach() for a in adapted], list(meta))


@torch.no_grad()
def apply_outer_update(
    meta: list[torch.Tensor], mean_delta: list[torch.Tensor], lr: float, optimizer: torch.optim.Optimizer | None
) -> None:
    """θ ← θ + lr·mean(θ′ − θ), or hand the pseudo-gradient θ − θ′ to ``optimizer``."""
    if optimizer is None:
        torch._foreach_add_(meta, mean_delta, alpha=lr)
        return
    for p, d in zip(meta, mean_delta):
        p.grad = -d
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def make_outer_optimizer(name: str, tensors: list[torch.Tensor], lr: float) -> torch.optim.Optimizer | None:
    if name == "none":
        return None
    if name == "adam":
        return torch.optim.Adam(tensors, lr=lr, betas=(0.0, 0.999))
    return torch.optim.SGD(tensors, lr=lr)


class Reptile(MetaAlgorithm):
    name = "reptile"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        self.state = ParameterState(model)
        self.outer_optimizer = make_outer_optimizer(params.outer_optimizer, self.state.meta, params.outer_lr)
        # New classes: each task trains its own N-row head, built from the meta-learned row (heads.py).
        self.task_head = TaskHead(model, params, pad_token_id, self.device, accelerator) if self.new_classes else None

    def reset(self) -> None:
        if self.task_head is not None:
            self.task_head.remove()
        self.state.reset()

    def _inner(self, support: TaskExamples, steps: int, seed: int) -> float:
        p = self.params
        if self.task_head is not None:
            self.task_head.install(support)
        torch.manual_seed(seed)  # dropout masks: a function of the episode, not of the process
        return train_steps(
            self.model,
            support,
            steps,
            p.inner_batch_size,
            p.inner_lr,
            p.inner_optimizer,
            self.pad_token_id,
            self.device,
            np.random.default_rng(seed),
            p.max_grad_norm,
            self.accelerator,
        )

    def adapt(self, support: TaskExamples, steps: int, seed: int = 0) -> dict[str, float]:
        self.reset()
        loss = self._inner(support, steps, seed)
        self.adapted_labels = support.label_names
        return {"loss": loss}

    def export_model(self, adapted: bool = False):
        if adapted and self.task_head is not None and self.task_head.installed:
            return self.task_head.exported(self.adapted_labels)
        return super().export_model(adapted)

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        p = self.params
        delta = [torch.zeros_like(m) for m in self.state.meta]
        losses, qlosses = [], []
        for ep in episodes:
            self.reset()
            losses.append(self._inner(ep.support, p.inner_steps, ep.seed))
            if len(ep.query):
                qlosses.append(
                    query_loss(
                        self.model, ep.query, p.eval_batch_size, self.pad_token_id, self.device, self.accelerator
                    )
                )
            task_delta = reptile_delta(self.state.meta, self.state.live)
            if self.task_head is not None:
                self.task_head.add_row_delta(task_delta, self.state.live)
            torch._foreach_add_(delta, task_delta)
        delta = sum_across_processes(self.accelerator, delta)
        torch._foreach_div_(delta, float(total_tasks))
        apply_outer_update(self.state.meta, delta, p.outer_lr * lr_scale, self.outer_optimizer)
        self.reset()
        metrics = {"loss": float(np.mean(losses)) if losses else float("nan")}
        if qlosses:
            metrics["query_loss"] = float(np.mean(qlosses))
        return reduce_mean(self.accelerator, metrics)

    def initial_state(self) -> dict[str, Any]:
        return {"meta": [p.detach().clone() for p in self.state.live]}

    def state_dict(self) -> dict[str, Any]:
        return {
            "meta": [m.cpu() for m in self.state.meta],
            "outer_optimizer": self.outer_optimizer.state_dict() if self.outer_optimizer else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.state.meta, [m.to(self.device) for m in state["meta"]])
        if self.outer_optimizer is not None and state.get("outer_optimizer"):
            self.outer_optimizer.load_state_dict(state["outer_optimizer"])
        self.reset()
