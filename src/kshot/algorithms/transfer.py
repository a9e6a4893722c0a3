"""The transfer baseline: one classifier trained on the pooled training domains, then adapted.

Each ``meta_step`` is one ordinary minibatch step: the support and query examples of the step's
episodes are pooled into one batch (the task boundaries are ignored), the mean cross-entropy over
all processes' examples is minimised by Adam at ``params.meta_lr`` (following
``outer_lr_schedule``), its gradient clipped to ``max_grad_norm``. Adaptation is reptile's inner
loop (fine-tuning every weight on the support set).

New classes: the examples keep their classes' ids in the training pool (``Episode.class_ids``), and a
classifier over every training class (``pool_head``, fed what the model's head reads) is trained with
the body; it is thrown away after training. Each task then starts a new head by
``params.new_class_head`` (see task_head.py), as every other in-place algorithm does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Episode, collate
from .base import autocast, to_device
from .loss_scale import refuse_unscaled_fp16
from .reptile import Reptile
from .shared_state import sum_across_processes


class Transfer(Reptile):
    name = "transfer"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        self.outer_optimizer = torch.optim.Adam(self.state.meta, lr=params.meta_lr)
        self.pool_head: torch.nn.Linear | None = None  # new classes: made by the first step (pool size)

    def _make_pool_head(self, n_classes: int, weights: dict[str, torch.Tensor] | None = None) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.params.seed)
            self.pool_head = torch.nn.Linear(self.task_head.meta_head.in_features, n_classes).to(self.device)
        if weights is not None:
            self.pool_head.load_state_dict(weights)
        self.outer_optimizer.add_param_group({"params": list(self.pool_head.parameters()), "lr": self.params.meta_lr})

    def _logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.pool_head is None:
            return self.model(**inputs).logits
        captured: list[torch.Tensor] = []
        hook = self.task_head.meta_head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            self.model(**inputs)
        finally:
            hook.remove()
        return self.pool_head(captured[0].float())

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        p = self.params
        refuse_unscaled_fp16(self.accelerator, self.name)
        ids = [x for ep in episodes for part in (ep.support, ep.query) for x in part.input_ids]
        if self.new_classes and episodes and self.pool_head is None:
            self._make_pool_head(episodes[0].pool_classes)
        parts = [
            (part, ep.class_ids if self.new_classes else None) for ep in episodes for part in (ep.support, ep.query)
        ]
        labels = (
            np.concatenate([part.labels if ids is None else ids[part.labels] for part, ids in parts])
            if episodes
            else np.zeros(0, np.int64)
        )
        self.reset()
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        torch.manual_seed(episodes[0].seed if episodes else step)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        # Minibatches of inner_batch_size accumulate one gradient (memory stays that of one batch).
        for start in range(0, len(ids), p.inner_batch_size):
            batch = to_device(
                collate(
                    ids[start : start + p.inner_batch_size],
                    self.pad_token_id,
                    labels[start : start + p.inner_batch_size],
                ),
                self.device,
            )
            with autocast(self.accelerator):
                logits = self._logits(batch)
            loss = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            loss.backward()
            loss_sum += loss.detach().double()
        live = self.state.live + (list(self.pool_head.parameters()) if self.pool_head is not None else [])
        grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in live]
        # Example count and loss sum ride in the gradients' collective (and dtype).
        stats = torch.stack([torch.tensor(float(len(ids)), device=self.device), loss_sum]).to(grads[0].dtype)
        *grads, stats = sum_across_processes(self.accelerator, grads + [stats])
        n = max(float(stats[0]), 1.0)
        torch._foreach_div_(grads, n)
        if p.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(grads, p.max_grad_norm, torch.nn.utils.get_total_norm(grads))
        pool = list(self.pool_head.parameters()) if self.pool_head is not None else []
        for m, g in zip(self.state.meta + pool, grads):
            m.grad = g
        for group in self.outer_optimizer.param_groups:
            group["lr"] = p.meta_lr * lr_scale
        self.outer_optimizer.step()
        self.outer_optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        self.reset()
        return {"loss": float(stats[1]) / n}

    def state_dict(self):
        state = super().state_dict()
        if self.pool_head is not None:
            state["pool_head"] = {k: v.detach().cpu().clone() for k, v in self.pool_head.state_dict().items()}
        return state

    def load_state_dict(self, state) -> None:
        if state.get("pool_head") is not None and self.pool_head is None:
            self._make_pool_head(state["pool_head"]["weight"].shape[0], state["pool_head"])
        elif state.get("pool_head") is not None:
            self.pool_head.load_state_dict(state["pool_head"])
        super().load_state_dict(state)
