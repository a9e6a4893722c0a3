"""The plain inner loop shared by the first-order methods: a few optimizer steps on the support set."""

from __future__ import annotations

import numpy as np
import torch

from ..data import TaskExamples
from .base import autocast, support_batches, to_device
from .functional import cross_entropy
from .loss_scale import LossScaler


def make_inner_optimizer(name: str, tensors, lr: float) -> torch.optim.Optimizer:
    # A fresh optimizer per task: its state (Adam moments) must not leak from one task to the next.
    # foreach: one fused kernel per operation over all tensors; torch enables it by default on GPUs only.
    if name == "adam":
        return torch.optim.Adam(tensors, lr=lr, foreach=True)
    return torch.optim.SGD(tensors, lr=lr, foreach=True)


def train_steps(
    model,
    support: TaskExamples,
    steps: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    pad_token_id: int,
    device,
    generator: np.random.Generator,
    max_grad_norm: float | None = None,
    accelerator=None,
    parameters=None,
    scaler: LossScaler | None = None,
) -> float:
    """Train ``model`` in place for ``steps`` steps on ``support``; returns the mean training loss.

    ``scaler``: fp16's loss scale (default: the accelerator's, fresh for the task); a step whose gradients
    overflow is taken again at a lower scale."""
    if steps == 0:
        return float("nan")
    trainable = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    opt = make_inner_optimizer(optimizer, trainable, lr)
    model.train()
    losses = []
    scaler = scaler or LossScaler.for_accelerator(accelerator)
    for batch in support_batches(support, steps, batch_size, pad_token_id, generator):
        batch = to_device(batch, device)
        labels = batch.pop("labels")

        def step_loss(batch=batch, labels=labels):
            with autocast(accelerator):
                logits = model(**batch).logits
            # Our own cross-entropy, not the model's loss: that one follows config.num_labels, and a new-class
            # model (one meta-learned row, a task's N-row head in its place) would be read as a regression.
            return cross_entropy(logits, labels)

        loss = scaler.backward(step_loss, trainable, lambda: opt.zero_grad(set_to_none=True))
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        opt.step()
        losses.append(loss.detach())
    return float(torch.stack(losses).mean())
