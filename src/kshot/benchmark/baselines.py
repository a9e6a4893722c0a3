"""Baselines for the few-shot benchmarks: what a user would pick instead of meta-learning, scored on
the same evaluation episodes as kshot.

- ``frozen_prototypes``: the model as shipped, no training. A text's embedding is the mean of its last
  hidden states over the attention mask, L2-normalised; a query gets the class whose prototype (the
  normalised mean of its support embeddings) has the highest dot product (cosine) with it.
- ``logistic_regression``: scikit-learn ``LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)``
  (multinomial) on the same frozen normalised embeddings, fit on each episode's support set.
- ``setfit``: SetFit 1.x (the optional dependency ``setfit``) with the same body loaded as a
  ``SentenceTransformer``, its default training arguments and logistic-regression head, trained anew
  on each episode's support set. Slow: a few seconds to minutes an episode, so pass ``max_episodes``.
  It always trains in float32 (``precision`` applies to the frozen methods only).

The frozen methods encode every distinct text of the episodes once (length-sorted batches, eval
mode, no gradients, float32 unless ``precision="bf16"``), so hundreds of episodes drawn from the same
examples cost about one pass over them.

An episode is a :class:`kshot.data.FixedTask` (or any object with the same fields): ``name``,
``support`` and ``query`` (each with ``texts`` and int ``labels`` 0..N-1) and ``classes``, the
names of its N classes. Macro-F1 averages over those N classes.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, ModelError, shown, unknown_choice
from ..training.metrics import accuracy, confidence_95, macro_f1

if TYPE_CHECKING:
    from ..data import FixedTask

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
LOGISTIC_REGRESSION = {"C": 1.0, "solver": "lbfgs", "max_iter": 1000}


def methods() -> list[str]:
    """The baseline names :func:`evaluate_baseline` accepts."""
    return list(_METHODS)


def evaluate_baseline(
    method: str,
    tasks: Sequence[FixedTask],
    model_path: str,
    *,
    batch_size: int = 64,
    max_length: int = 256,
    max_episodes: int | None = None,
    seed: int = 42,
    precision: str = "fp32",
    device: str | None = None,
) -> dict[str, Any]:
    """Score ``method`` on the first ``max_episodes`` of ``tasks`` (all of them by default).

    Returns ``{"method", "settings", "tasks": {name: {"accuracy", "macro_f1", "n_query",
    "train_seconds"}}, "mean": {"accuracy", "macro_f1", "accuracy_ci95", "episodes", "seconds",
    "encode_seconds"}}``. ``accuracy_ci95`` is the half-width 1.96·std/√E of the episode accuracies
    (sample std, 0 for one episode; as kshot's own evaluation reports it); ``seconds`` is the whole call's wall clock,
    ``encode_seconds`` the part spent embedding texts for the frozen methods (0 for SetFit), and
    ``train_seconds`` an episode's own fitting time (prototypes, logistic regression, or SetFit's
    ``Trainer.train``).
    """
    if method not in _METHODS:
        raise ConfigError(unknown_choice("baseline method", method, methods()))
    if precision not in PRECISIONS:
        raise ConfigError(unknown_choice("precision", precision, PRECISIONS))
    if max_episodes is not None and max_episodes < 1:
        raise ConfigError(f"max_episodes must be at least 1 or None (all episodes), got {shown(max_episodes)}.")
    if batch_size < 1 or max_length < 1:
        raise ConfigError(f"batch_size and max_length must be positive, got {batch_size} and {max_length}.")
    tasks = list(tasks)[:max_episodes]
    if not tasks:
        raise DataError("No episodes to evaluate: the task list is empty.")
    for task in tasks:
        _check_task(task)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    runner, settings = _METHODS[method]
    per_task, encode_seconds = runner(
        tasks,
        model_path,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        precision=precision,
        device=device,
    )
    seconds = time.perf_counter() - start
    accs = np.array([t["accuracy"] for t in per_task.values()], dtype=np.float64)
    f1s = np.array([t["macro_f1"] for t in per_task.values()], dtype=np.float64)
    return {
        "method": method,
        "settings": {**settings, "precision": precision, "max_length": max_length, "seed": seed},
        "tasks": per_task,
        "mean": {
            "accuracy": float(np.mean(accs)),
            "macro_f1": float(np.mean(f1s)),
            "accuracy_ci95": confidence_95(accs),
            "macro_f1_ci95": confidence_95([t["macro_f1"] for t in per_task.values()]),
            "episodes": len(per_task),
            "seconds": seconds,
            "encode_seconds": encode_seconds,
        },
    }


def _check_task(task: Any) -> None:
    n = len(task.classes)
    for part in ("support", "query"):
        ex = getattr(task, part)
        labels = np.asarray(ex.labels)
        if len(labels) != len(ex.texts):
            raise DataError(f"Episode {task.name!r}: {part} has {len(ex.texts)} texts but {len(labels)} labels.")
        if len(labels) and (labels.min() < 0 or labels.max() >= n):
            raise DataError(f"Episode {task.name!r}: {part} labels must be ids 0..{n - 1} into its {n} classes.")
    if len(task.query.texts) == 0:
        raise DataError(f"Episode {task.name!r} has no query examples to score.")
    missing = sorted(set(range(n)) - set(np.asarray(task.support.labels).tolist()))
    if missing:
        names = [task.classes[i] for i in missing]
        raise DataError(f"Episode {task.name!r}: no support example for the classes {shown(names)}.")


def _scores(task: Any, pred: np.ndarray, train_seconds: float) -> dict[str, float]:
    y = np.asarray(task.query.labels, dtype=np.int64)
    return {
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, range(len(task.classes))),
        "n_query": int(len(y)),
        "train_seconds": float(train_seconds),
    }


# ---- frozen encoder ----------------------------------------------------------------------------------


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


@torch.no_grad()
def embed_texts(
    texts: Sequence[str],
    model_path: str,
    *,
    batch_size: int = 64,
    max_length: int = 256,
    precision: str = "fp32",
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """``text → L2-normalised mean-pooled embedding`` (float32) for every distinct text, encoded once."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModel.from_pretrained(model_path).to(device).eval()
    except (OSError, ValueError) as err:
        raise ModelError(f"Cannot load a model from {model_path}: {err}") from err
    distinct = list(dict.fromkeys(texts))
    ids = tokenizer(distinct, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(i) for i in ids], kind="stable")
    out: dict[str, np.ndarray] = {}
    dtype = torch.bfloat16 if precision == "bf16" else None
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        emb = torch.nn.functional.normalize(_mean_pool(hidden.float(), batch["attention_mask"]), dim=-1)
        for i, e in zip(idx, emb.cpu().numpy()):
            out[distinct[i]] = e
    return out


def _frozen(fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], np.ndarray]):
    def run(tasks, model_path, *, batch_size, max_length, seed, precision, device):
        t0 = time.perf_counter()
        texts = [t for task in tasks for t in (*task.support.texts, *task.query.texts)]
        table = embed_texts(
            texts, model_path, batch_size=batch_size, max_length=max_length, precision=precision, device=device
        )
        encode_seconds = time.perf_counter() - t0
        per_task = {}
        for task in tasks:
            xs = np.stack([table[t] for t in task.support.texts])
            xq = np.stack([table[t] for t in task.query.texts])
            t1 = time.perf_counter()
            pred = fit_predict(xs, np.asarray(task.support.labels, dtype=np.int64), xq, len(task.classes), seed)
            per_task[task.name] = _scores(task, pred, time.perf_counter() - t1)
        return per_task, encode_seconds

    return run


def _prototypes(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, n: int, seed: int) -> np.ndarray:
    protos = np.stack([xs[ys == c].mean(axis=0) for c in range(n)])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(min=1e-12)
    return np.argmax(xq @ protos.T, axis=1)


def _logistic_regression(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, n: int, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    if n == 1:  # one class: nothing to fit, and scikit-learn refuses it
        return np.zeros(len(xq), dtype=np.int64)
    with warnings.catch_warnings():
        # One shot of many classes is this baseline's normal case, not a regression target; the warning
        # scikit-learn gives for it, once per episode, would bury the benchmark's log.
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        return LogisticRegression(**LOGISTIC_REGRESSION, random_state=seed).fit(xs, ys).predict(xq)


# ---- SetFit ------------------------------------------------------------------------------------------


def _setfit(tasks, model_path, *, batch_size, max_length, seed, precision, device):
    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as err:
        raise ConfigError(
            f"The setfit baseline needs the package setfit 1.x ({err}); install it with pip install 'setfit==1.2.0'."
        ) from err
    from setfit import logging as setfit_logging
    from transformers.utils import logging as hf_logging

    try:
        base = SetFitModel.from_pretrained(model_path, device=device)
    except (OSError, ValueError) as err:
        raise ModelError(f"Cannot load {model_path} as a SentenceTransformer for SetFit: {err}") from err
    base.model_body.max_seq_length = max_length
    verbosity = hf_logging.get_verbosity(), setfit_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    setfit_logging.set_verbosity_warning()  # importing setfit.trainer turns its own logs up to info
    per_task = {}
    try:
        with tempfile.TemporaryDirectory(prefix="kshot-setfit-") as out_dir:
            for task in tasks:
                model = copy.deepcopy(base)
                train = Dataset.from_dict(
                    {"text": list(task.support.texts), "label": np.asarray(task.support.labels).tolist()}
                )
                # SetFit's defaults for everything that shapes training; only where it writes and what it shows differ.
                args = TrainingArguments(
                    output_dir=out_dir,
                    save_strategy="no",
                    report_to="none",
                    show_progress_bar=False,
                    seed=seed,
                )
                trainer = Trainer(model=model, args=args, train_dataset=train)
                t0 = time.perf_counter()
                trainer.train()
                train_seconds = time.perf_counter() - t0
                pred = np.asarray(model.predict(list(task.query.texts), batch_size=batch_size, as_numpy=True))
                per_task[task.name] = _scores(task, pred.astype(np.int64), train_seconds)
                logger.info(
                    "setfit %s: accuracy %.3f, %.1f s training",
                    task.name,
                    per_task[task.name]["accuracy"],
                    train_seconds,
                )
    finally:
        hf_logging.set_verbosity(verbosity[0])
        setfit_logging.set_verbosity(verbosity[1])
    return per_task, 0.0


_METHODS: dict[str, tuple[Callable, dict[str, Any]]] = {
    "frozen_prototypes": (_frozen(_prototypes), {"pooling": "mean", "normalize": True, "score": "cosine"}),
    "logistic_regression": (
        _frozen(_logistic_regression),
        {"pooling": "mean", "normalize": True, "classifier": f"sklearn LogisticRegression{LOGISTIC_REGRESSION}"},
    ),
    "setfit": (_setfit, {"setfit": "1.x", "training_arguments": "defaults", "head": "LogisticRegression()"}),
}
