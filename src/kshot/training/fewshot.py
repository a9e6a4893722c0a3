"""Using a saved model: evaluate it on test tasks, adapt it to a user's examples, predict."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algorithms.metric import has_saved_support
from ..config import KshotConfig, Params
from ..data import TaskExamples, collate
from ..data.tokenization import tokenize_examples
from ..errors import DataError, ModelError
from ..models import load_model, load_tokenizer, model_label_names, read_kshot_meta, save_model
from .calibration import fold_into_head, prior_shift
from .evaluation import evaluate_tasks
from .precision import autocast_context, launcher_precision, resolve_precision
from .setup import build_algorithm, build_tasks, make_accelerator

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
    model = load_model(str(model_dir), tasks.collection.label_names)
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


def read_labelled_file(
    path: str | Path, text_column: str = "text", label_column: str | None = "label"
) -> tuple[list[str], list[str] | None]:
    """Texts (and labels) from a CSV, JSON/JSONL or plain text file (one text per line, unlabelled)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if label_column is not None:
            raise DataError(
                f"{path}: a .txt file holds no labels;"
                f" give a CSV or JSONL file with '{text_column}' and '{label_column}' columns."
            )
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path} holds no texts.")
        return texts, None
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if builder is None:
        raise DataError(f"{path}: unsupported file type '{suffix}'. Use .csv, .jsonl, .json (or .txt for predict).")
    import datasets

    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types for malformed files
        raise DataError(f"Cannot read {path}: {type(err).__name__}: {err}") from err
    for col in [c for c in (text_column, label_column) if c]:
        if col not in ds.column_names:
            raise DataError(f"{path}: no column '{col}'. Columns: {', '.join(ds.column_names)}.")
    texts = ds[text_column]
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(
                f"{path}, row {i + 1}: the text ('{text_column}') is empty. Remove the row or fill in the text."
            )
    labels = None
    if label_column:
        labels = [None if v is None else str(v) for v in ds[label_column]]
        for i, lab in enumerate(labels):
            if lab is None or not lab.strip():
                raise DataError(f"{path}, row {i + 1}: the label ('{label_column}') is empty.")
    return [t.strip() for t in texts], labels


def adapt_model(
    model_dir: str | Path,
    support_file: str | Path,
    out_dir: str | Path,
    steps: int | None = None,
    params_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune a saved model on a few labelled examples and save a standard Hugging Face folder."""
    _check_model_dir(model_dir)
    texts, labels = read_labelled_file(support_file)
    params = saved_params(model_dir, params_overrides)
    accelerator = make_accelerator(params, training=False)
    tokenizer = load_tokenizer(str(model_dir))
    torch.manual_seed(params.seed)
    probe = load_model(str(model_dir))
    known = model_label_names(probe)
    user = sorted(set(labels))
    # Keep the meta-learned head when the user's labels are the model's; otherwise start a new head.
    label_names = known if set(user) <= set(known) else user
    if label_names is user:
        logger.warning("Labels %s differ from the model's %s: a new classifier head is trained.", user, known)
        model = load_model(str(model_dir), label_names)
    else:
        model = probe
    ids = {n: i for i, n in enumerate(label_names)}
    support = TaskExamples(
        name="support",
        domain="user",
        texts=texts,
        labels=np.array([ids[lab] for lab in labels]),
        source=str(support_file),
    )
    tokenize_examples(support, tokenizer, params.max_length)
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
    if prior is not None and label_names is known:
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
    """Label and probability for each text, with any saved sequence classifier."""
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
        # Adapted by a metric-based algorithm: the classifier is the saved support state (e.g.
        # protonet's prototypes) over the encoder's mean-pooled embeddings, not the model's own head.
        algorithm = build_algorithm(model, saved_params(model_dir), None, tokenizer)
        algorithm.load_pretrained(str(model_dir))
        with autocast_context(precision):
            logits = torch.from_numpy(algorithm.predict(task, batch_size))
        return _labelled(texts, torch.softmax(logits, dim=-1).numpy(), names)
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    order = np.argsort([len(x) for x in task.input_ids], kind="stable")
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([task.input_ids[i] for i in idx], pad)
        with autocast_context(precision):
            logits = model(**batch).logits
        probs[idx] = torch.softmax(logits.float(), dim=-1).numpy()
    return _labelled(texts, probs, names)


def _labelled(texts: Sequence[str], probs: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    return [{"text": t, "label": names[int(np.argmax(p))], "score": float(np.max(p))} for t, p in zip(texts, probs)]


def write_predictions(predictions: list[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in predictions:
            fh.write(json.dumps(row) + "\n")
