"""Tokenize every text once, cache the ids on disk, and pad per batch (never to a fixed 512)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .tasks import TaskCollection, TaskExamples, class_name_text

logger = logging.getLogger(__name__)


def _cache_key(texts: Sequence[str], tokenizer, max_length: int) -> str:
    h = hashlib.sha256()
    h.update(f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}|".encode())
    h.update(
        tokenizer.convert_tokens_to_string(
            tokenizer.convert_ids_to_tokens(list(range(0, len(tokenizer), 997)))
        ).encode()
    )
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def tokenize_texts(texts: Sequence[str], tokenizer, max_length: int, cache_dir: str | None = None) -> list[np.ndarray]:
    """Token ids of each text (with special tokens, truncated to ``max_length``); cached by content."""
    path = None
    if cache_dir:
        path = Path(cache_dir) / f"tokens-{_cache_key(texts, tokenizer, max_length)}.npz"
        if path.exists():
            with np.load(path) as data:
                flat, offsets = data["flat"], data["offsets"]
            return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    ids = [np.asarray(e, dtype=np.int32) for e in encoded]
    if path is not None:
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e) for e in ids])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, flat=np.concatenate(ids) if ids else np.zeros(0, np.int32), offsets=offsets)
        os.replace(tmp, path)
    return ids


def tokenize_collection(
    collection: TaskCollection, tokenizer, max_length: int, cache_dir: str | None = None, test_only: bool = False
) -> None:
    """Set ``input_ids`` on every task of the collection (``test_only``: on its test tasks alone, which
    is all that evaluating a saved model reads), tokenizing each distinct text once."""
    tasks = collection.test_examples() if test_only else collection.all_examples()
    unique = list(dict.fromkeys(t for task in tasks for t in task.texts))
    ids = tokenize_texts(unique, tokenizer, max_length, cache_dir)
    lookup = dict(zip(unique, ids))
    for task in tasks:
        task.input_ids = [lookup[t] for t in task.texts]
    _tokenize_names(tasks, tokenizer, max_length, collection.label_names)
    logger.info("Tokenized %d distinct texts (max_length=%d).", len(unique), max_length)


def _tokenize_names(tasks: Sequence[TaskExamples], tokenizer, max_length: int, default: Sequence[str]) -> None:
    """Set ``name_input_ids``: the ids of each label's :func:`class_name_text` (a few hundred names at most)."""
    names = list(dict.fromkeys(n for task in tasks for n in (task.label_names or default)))
    lookup = dict(zip(names, tokenize_texts([class_name_text(n) for n in names], tokenizer, max_length)))
    for task in tasks:
        task.name_input_ids = [lookup[n] for n in (task.label_names or default)]


def tokenize_examples(task: TaskExamples, tokenizer, max_length: int) -> TaskExamples:
    task.input_ids = tokenize_texts(task.texts, tokenizer, max_length)
    if task.label_names:
        _tokenize_names([task], tokenizer, max_length, task.label_names)
    return task


def collate(
    input_ids: Sequence[np.ndarray], pad_token_id: int, labels: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch."""
    width = max(len(x) for x in input_ids)
    ids = np.full((len(input_ids), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, x in enumerate(input_ids):
        ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if labels is not None:
        batch["labels"] = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return batch


def length_sorted_batches(
    task: TaskExamples, batch_size: int, pad_token_id: int
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Batches of similar length (little padding) for scoring; yields the original indices with each."""
    assert task.input_ids is not None, "tokenize the task first"
    order = np.argsort([len(x) for x in task.input_ids], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([task.input_ids[i] for i in idx], pad_token_id, task.labels[idx])
