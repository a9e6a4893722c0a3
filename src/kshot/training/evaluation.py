"""The few-shot protocol: per task, adapt from the meta-parameters on the support set, score the query set."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np

from ..algorithms import MetaAlgorithm
from ..data import FixedTask
from .calibration import prior_shift
from .metrics import accuracy, macro_f1, summarize

logger = logging.getLogger(__name__)


def adapted_logits(algorithm: MetaAlgorithm, task: FixedTask, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """The query set's logits after adapting on the support set; the meta-parameters are restored."""
    # Seeded by the task name: the same task adapts identically whichever process scores it.
    algorithm.adapt(task.support, steps, seed=zlib.crc32(task.name.encode()) ^ seed)
    logits = algorithm.predict(task.query, batch_size)
    algorithm.reset()
    return logits


def task_classes(task: FixedTask) -> np.ndarray:
    return np.unique(np.concatenate([task.support.labels, task.query.labels]))


def score_task(task: FixedTask, scores: np.ndarray) -> dict[str, float]:
    """Metrics of the query set from per-label ``scores`` (logits or probabilities, one column per label)."""
    classes = task_classes(task)
    # N-way tasks: predict among the task's own classes only.
    pred = classes[np.argmax(scores[:, classes], axis=1)]
    return {
        "accuracy": accuracy(task.query.labels, pred),
        "macro_f1": macro_f1(task.query.labels, pred, classes.tolist()),
        "n_query": int(len(task.query)),
        "n_positive_pred": int(np.sum(pred == classes[-1])),
    }


def evaluate_task(
    algorithm: MetaAlgorithm,
    task: FixedTask,
    steps: int,
    batch_size: int,
    seed: int,
    label_prior: np.ndarray | None = None,
) -> dict[str, float]:
    logits = adapted_logits(algorithm, task, steps, batch_size, seed)
    if label_prior is not None:
        classes = task_classes(task)
        logits = logits.copy()
        logits[:, classes] += prior_shift(label_prior, task.support.labels, classes)
    return score_task(task, logits)


def evaluate_tasks(
    algorithm: MetaAlgorithm,
    tasks: Sequence[FixedTask],
    steps: int,
    batch_size: int,
    seed: int,
    accelerator=None,
    *,
    label_prior: np.ndarray | None = None,
) -> dict:
    """Per-task metrics and their unweighted means. Tasks are split across processes and gathered.

    ``label_prior`` (see calibration.py) moves predictions from the support's prior to that prior.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    # Where the algorithm allows it (the body is not adapted), each distinct text is encoded once for all tasks.
    with algorithm.caching_features():
        local = {
            t.name: evaluate_task(algorithm, t, steps, batch_size, seed, label_prior) for t in list(tasks)[rank::world]
        }
    if world > 1:
        from accelerate.utils import gather_object

        gathered = gather_object([local])
        local = {k: v for part in gathered for k, v in part.items()}
    ordered = {t.name: local[t.name] for t in tasks}
    return {"tasks": ordered, "mean": summarize(ordered)}
