"""Sentence embeddings for the metric-based algorithms: mean pooling of the base encoder's last layer.

The classification head of the Hugging Face model is not used: ``model.base_model`` (``bert``,
``roberta``, ``distilbert``, ...) gives the token states, averaged over the attention mask so that
padding never changes an embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import TaskExamples, collate, length_sorted_batches
from .base import autocast, to_device


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where the mask is 1: [batch, tokens, dim] → [batch, dim]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def encode(model, batch: dict[str, torch.Tensor], accelerator=None) -> torch.Tensor:
    """Mean-pooled float32 embeddings of a collated batch (gradients flow when enabled)."""
    with autocast(accelerator):
        out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return mean_pool(out[0].float(), batch["attention_mask"])


def encode_ids(model, input_ids: list[np.ndarray], pad_token_id: int, device, accelerator=None) -> torch.Tensor:
    """Embeddings of a list of token-id arrays in one forward pass (episodes are small)."""
    return encode(model, to_device(collate(input_ids, pad_token_id), device), accelerator)


@torch.no_grad()
def embed_task(model, task: TaskExamples, batch_size: int, pad_token_id: int, device, accelerator=None) -> torch.Tensor:
    """Embeddings of every example of ``task`` in order, in eval mode (no dropout), without gradients."""
    was_training = model.training
    model.eval()
    out = None
    for idx, batch in length_sorted_batches(task, batch_size, pad_token_id):
        batch.pop("labels")
        emb = encode(model, to_device(batch, device), accelerator)
        if out is None:
            out = torch.empty(len(task), emb.shape[1], device=emb.device)
        out[torch.as_tensor(idx, device=emb.device)] = emb
    model.train(was_training)
    return out
