"""Using a saved model: evaluate it on test tasks, adapt it to a user's examples, predict."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algorithms.base import is_new_class_model, predict_logits
from ..algorithms.metric import has_saved_support
from ..config import KshotConfig, Params
from ..data import TaskExamples
from ..data.tokenization import tokenize_examples
from ..data.user_files import read_labelled_file
from ..errors import DataError, ModelError, shown
from ..models import load_model, load_tokenizer, model_label_names, read_kshot_meta, save_model
from .calibration import fold_into_head, prior_shift
from .evaluation import evaluate_tasks
from .precision import autocast_context, launcher_precision, resolve_precision
from .setup import build_algorithm, build_tasks, load_run_model, make_accelerator

logger = logging.getLogger(__name__)


def saved_params(model_dir: str | Path, overrides: dict[str, Any] | None = None) -> Params:
    """The params a model was trained with (from ``kshot.json``), with ``overrides`` applied.

    A plain Hugging Face checkpoint has none: it is adapted like the ``finetune`` baseline (reptile's
    inner loop with the defaults).
    """
    meta = read_kshot_meta(model_dir) or {}
    data = dict(meta.get("params", {}))
    data.update(overrides or {})
    return Params.from_dict(data)


def _check_model_dir(model_dir: str | Path) -> None:
    if not Path(model_dir).exists():
        raise ModelError(
            f"Model folder {model_dir} does not exist. Give the output_dir of `kshot train` or of `kshot adapt`."
        )


def evaluate_model(
    model_dir: str | Path, config: KshotConfig, params_overrides: dict[str, Any] | None = None, accelerator=None
) -> dict[str, Any]:
    """The few-shot protocol on ``config``'s test tasks: per task adapt a fresh copy, score the query."""
    _check_model_dir(model_dir)
    params = saved_params(model_dir, params_overrides)
    accelerator = accelerator or make_accelerator(params, training=False)
    tokenizer = load_tokenizer(str(model_dir))
    tasks = build_tasks(config, params, tokenizer, with_training=False)
    if not tasks.test:
        raise DataError("No test tasks: set data.test_domains (or use a format with default test domains).")
    model = load_run_model(
        str(model_dir),
        tasks.collection.label_names,
        params,
        new_classes=tasks.collection.new_classes,
        pooling=config.model.pooling,
    )
    algorithm = build_algorithm(model, params, accelerator, tokenizer)
    algorithm.load_pretrained(str(model_dir))
    prior = saved_label_prior(model_dir, params)
    return evaluate_tasks(
        algorithm,
        tasks.test,
        params.eval_inner_steps,
        params.eval_batch_size,
        params.seed,
        accelerator,
        label_prior=prior,
    )


def saved_label_prior(model_dir: str | Path, params: Params) -> np.ndarray | None:
    """The training tasks' label prior stored with a model trained with ``prior_calibration``."""
    prior = (read_kshot_meta(model_dir) or {}).get("label_prior")
    return np.asarray(prior, dtype=np.float64) if params.prior_calibration and prior is not None else None


def adapt_model(
    model_dir: str | Path,
    support_file: str | Path,
    out_dir: str | Path,
    steps: int | None = None,
    params_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Adapt a saved model to a few labelled examples and save a standard Hugging Face folder.

    When the examples' labels are the model's own, its meta-learned head is kept. Otherwise (new
    labels, or a model meta-trained for new classes) the task's head starts by the algorithm's rule
    for new classes (``params.new_class_head``, prototypes by default; see algorithms/heads.py), and
    the saved folder's ``id2label`` holds the user's label names."""
    _check_model_dir(model_dir)
    texts, labels = read_labelled_file(support_file)
    params = saved_params(model_dir, params_overrides)
    accelerator = make_accelerator(params, training=False)
    tokenizer = load_tokenizer(str(model_dir))
    torch.manual_seed(params.seed)
    probe = load_model(str(model_dir))
    known = model_label_names(probe)
    user = sorted(set(labels))
    new_classes = is_new_class_model(probe) or not set(user) <= set(known)
    if new_classes:
        if not is_new_class_model(probe):
            logger.warning(
                "Labels %s are not the model's %s: the head starts from the %s of these examples (new classes).",
                shown(user, 200),
                shown(known, 200),
                params.new_class_head,
            )
        label_names = user
        model = load_run_model(str(model_dir), label_names, params, new_classes=True)
    else:
        label_names, model = known, probe
    ids = {n: i for i, n in enumerate(label_names)}
    support = TaskExamples(
        name="support",
        domain="user",
        texts=texts,
        labels=np.array([ids[lab] for lab in labels]),
        source=str(support_file),
        label_names=list(label_names),
    )
    tokenize_examples(support, tokenizer, params.max_length)
    if params.label_names_as_support:
        support = support.with_class_names()
    algorithm = build_algorithm(model, params, accelerator, tokenizer)
    algorithm.load_pretrained(str(model_dir))
    n_steps = params.eval_inner_steps if steps is None else steps
    stats = algorithm.adapt(support, n_steps, seed=params.seed)
    meta_in = read_kshot_meta(model_dir) or {}
    meta = {
        "algorithm": params.algorithm,
        "base_model": str(model_dir),
        "adapted_on": str(support_file),
        "adapt_steps": n_steps,
        "label_names": label_names,
        "params": params.to_dict(),
        "config": meta_in.get("config", {}),
        "title": "kshot adapted text classifier",
    }
    note = algorithm.usage_note(adapted=True)
    if note:
        meta["usage"] = note
    model_out = accelerator.unwrap_model(algorithm.export_model(adapted=True))
    prior = saved_label_prior(model_dir, params)
    if prior is not None and not new_classes:
        classes = np.arange(len(label_names))
        if fold_into_head(model_out, prior_shift(prior, support.labels, classes)):
            meta["label_prior"] = prior.tolist()
            meta["calibrated"] = "the training tasks' label prior is folded into the classifier bias"
        else:
            logger.warning("This model has no linear head to fold the label prior into; predictions are uncalibrated.")
    save_model(model_out, tokenizer, out_dir, meta, algorithm.extra_files())
    return {"out_dir": str(out_dir), "labels": label_names, "steps": n_steps, **stats}


@torch.no_grad()
def predict_texts(
    model_dir: str | Path, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None
) -> list[dict[str, Any]]:
    """Label and probability for each text, with any saved sequence classifier: the folder's own head,
    as `transformers.pipeline` serves it (an adapted kshot folder holds its task's head)."""
    _check_model_dir(model_dir)
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
