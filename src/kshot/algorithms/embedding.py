"""Sentence embeddings for the metric-based algorithms: mean pooling of the base encoder's last layer.

The classification head of the Hugging Face model is not used: ``model.base_model`` (``bert``,
``roberta``, ``distilbert``, ...) gives the token states, averaged over the attention mask so that
padding never changes an embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import TaskExamples, collate, length_sorted_batches
from ..models.pooling import is_mean_pooled
from .base import autocast, to_device


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where the mask is 1: [batch, tokens, dim] → [batch, dim]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def encode(model, batch: dict[str, torch.Tensor], accelerator=None) -> torch.Tensor:
    """Float32 embeddings of a collated batch (gradients flow when enabled): with the mean-pooling layer
    (models/pooling.py), what the classifier head reads, so a head built from them is the model's own;
    otherwise the mean of the last layer's token states."""
    with autocast(accelerator):
        out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if is_mean_pooled(model):
        return out.pooler_output.float()
    return mean_pool(out[0].float(), batch["attention_mask"])


def encode_ids(
    model, input_ids: list[np.ndarray], pad_token_id: int, device, accelerator=None, chunk: int = 32
) -> torch.Tensor:
    """Embeddings of a list of token-id arrays, in order (gradients flow): forward passes over chunks of
    similar length, so an episode of short and long texts is not padded to its longest (an intent
    episode's longest text is often twice its mean)."""
    if len(input_ids) <= chunk:
        return encode(model, to_device(collate(input_ids, pad_token_id), device), accelerator)
    order = np.argsort([len(x) for x in input_ids], kind="stable")
    parts = [
        encode(model, to_device(collate([input_ids[i] for i in idx], pad_token_id), device), accelerator)
        for idx in np.array_split(order, -(-len(order) // chunk))
    ]
    inverse = torch.as_tensor(np.argsort(order), device=parts[0].device)
    return torch.cat(parts)[inverse]


@torch.no_grad()
def embed_task(
    model, task: TaskExamples, batch_size: int, pad_token_id: int, device, accelerator=None, cache: dict | None = None
) -> torch.Tensor:
    """Embeddings of every example of ``task`` in order, in eval mode (no dropout), without gradients.
    ``cache`` (token ids → embedding): reuse what an earlier task of the same evaluation encoded."""
    return cached_features(
        task, cache, batch_size, pad_token_id, lambda b: encode(model, to_device(b, device), accelerator), model
    )


def cached_features(
    task: TaskExamples, cache: dict | None, batch_size: int, pad_token_id: int, compute, model
) -> torch.Tensor:
    """``compute(batch)`` for every example of ``task`` in order, in eval mode without gradients, in
    length-sorted batches; with ``cache`` (token ids → row), each distinct text is computed once."""
    keys = [x.tobytes() for x in task.input_ids] if cache is not None else None
    missing = task
    if cache is not None:
        first = {}  # each key not cached yet → its first position in the task
        for i, k in enumerate(keys):
            if k not in cache:
                first.setdefault(k, i)
        todo = list(first.values())
        missing = task.subset(np.asarray(todo, dtype=np.int64))
    was_training = model.training
    model.eval()
    rows = None
    with torch.no_grad():
        for idx, batch in length_sorted_batches(missing, batch_size, pad_token_id) if len(missing) else ():
            batch.pop("labels")
            emb = compute(batch).float()
            if rows is None:
                rows = torch.empty(len(missing), emb.shape[1], device=emb.device)
            rows[torch.as_tensor(idx, device=emb.device)] = emb
    model.train(was_training)
    if cache is None:
        return rows
    for j, i in enumerate(todo):
        cache[keys[i]] = rows[j]
    return torch.stack([cache[k] for k in keys])
