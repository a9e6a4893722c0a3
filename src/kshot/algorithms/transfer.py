"""The transfer baseline: one classifier trained on the pooled training domains, then adapted.

Each ``meta_step`` is one ordinary minibatch step: the support and query examples of the step's
episodes are pooled into one batch (the task boundaries are ignored), the mean cross-entropy over
all processes' examples is minimised by Adam at ``params.meta_lr`` (following
``outer_lr_schedule``), its gradient clipped to ``max_grad_norm``. Adaptation is reptile's inner
loop (fine-tuning every weight on the support set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Episode, collate
from .base import autocast, to_device
from .reptile import Reptile, sum_across_processes


class Transfer(Reptile):
    name = "transfer"

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        self.outer_optimizer = torch.optim.Adam(self.state.meta, lr=params.meta_lr)

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        p = self.params
        ids = [x for ep in episodes for part in (ep.support, ep.query) for x in part.input_ids]
        labels = (
            np.concatenate([part.labels for ep in episodes for part in (ep.support, ep.query)])
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
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            loss.backward()
            loss_sum += loss.detach().double()
        live = self.state.live
        grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in live]
        # Example count and loss sum ride in the gradients' collective (and dtype).
        stats = torch.stack([torch.tensor(float(len(ids)), device=self.device), loss_sum]).to(grads[0].dtype)
        *grads, stats = sum_across_processes(self.accelerator, grads + [stats])
        n = max(float(stats[0]), 1.0)
        torch._foreach_div_(grads, n)
        if p.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(grads, p.max_grad_norm, torch.nn.utils.get_total_norm(grads))
        for m, g in zip(self.state.meta, grads):
            m.grad = g
        for group in self.outer_optimizer.param_groups:
            group["lr"] = p.meta_lr * lr_scale
        self.outer_optimizer.step()
        self.outer_optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        self.reset()
        return {"loss": float(stats[1]) / n}
