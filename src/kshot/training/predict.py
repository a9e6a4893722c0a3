"""Labelling texts with a saved sequence classifier, and writing the predictions as JSONL."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algorithms.base import predict_logits
from ..algorithms.metric import has_saved_support
from ..data import TaskExamples
from ..data.tokenization import tokenize_examples
from ..models import load_model, load_tokenizer, model_label_names, read_kshot_meta
from .precision import autocast_context, launcher_precision, resolve_precision
from .saved import check_model_dir, saved_params
from .setup import build_algorithm

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_texts(
    model_dir: str | Path, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None
) -> list[dict[str, Any]]:
    """Label and probability for each text, with any saved sequence classifier: the folder's own head,
    as `transformers.pipeline` serves it (an adapted kshot folder holds its task's head)."""
    check_model_dir(model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir))
    model.eval()
    params = (read_kshot_meta(model_dir) or {}).get("params", {})
    task = TaskExamples(name="input", domain="input", texts=list(texts), labels=np.zeros(len(texts), dtype=np.int64))
    tokenize_examples(task, tokenizer, max_length or params.get("max_length", 256))
    names = model_label_names(model)
    # On the CPU without an Accelerator, in the precision the model's params ask for (as evaluate/adapt do).
    precision, reason = resolve_precision(
        params.get("mixed_precision", "auto"), "cpu", training=False, launcher=launcher_precision()
    )
    logger.info("Predicting in %s (%s).", "float32" if precision == "no" else precision, reason)
    if has_saved_support(model_dir):
        # Adapted by a metric-based algorithm before kshot folded support states into the head: the
        # classifier is the saved support state over the encoder's embeddings, not the model's own head.
        algorithm = build_algorithm(model, saved_params(model_dir), None, tokenizer)
        algorithm.load_pretrained(str(model_dir))
        with autocast_context(precision):
            logits = torch.from_numpy(algorithm.predict(task, batch_size))
        return _labelled(texts, torch.softmax(logits, dim=-1).numpy(), names)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with autocast_context(precision):
        logits = torch.from_numpy(predict_logits(model, task, batch_size, pad, "cpu"))
    return _labelled(texts, torch.softmax(logits, dim=-1).numpy(), names)


def _labelled(texts: Sequence[str], probs: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    return [{"text": t, "label": names[int(np.argmax(p))], "score": float(np.max(p))} for t, p in zip(texts, probs)]


def write_predictions(predictions: list[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in predictions:
            fh.write(json.dumps(row) + "\n")
