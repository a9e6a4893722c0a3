"""Label-prior calibration learned across tasks.

Episodes and few-shot supports are usually balanced (5 + 5), so an adapted model learns a uniform
prior, while real tasks are not balanced (ARSC query sets are 50–94% positive). The prior of the
training tasks, averaged task by task, is the best guess of a new task's prior that does not look
at its query texts; Bayes' rule moves the logits from the support's prior to it:
logit_c += log p_train(c) − log p_support(c).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data import TaskExamples


def label_prior(tasks: Sequence[TaskExamples], n_labels: int) -> np.ndarray:
    """Mean over tasks of each task's label distribution (every task counts once, whatever its size)."""
    dists = [np.bincount(t.labels, minlength=n_labels) / len(t) for t in tasks if len(t)]
    return np.mean(dists, axis=0)


def prior_shift(prior: np.ndarray, support_labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per-class logit offsets for ``classes`` (the task's classes), from the support's prior to ``prior``."""
    target = prior[classes] / prior[classes].sum()
    # Add-one smoothing: a class seen once in the support must not get an infinite offset.
    counts = np.array([np.sum(support_labels == c) for c in classes], dtype=np.float64) + 1.0
    source = counts / counts.sum()
    return np.log(np.clip(target, 1e-6, None)) - np.log(source)


def fold_into_head(model, shift: np.ndarray) -> bool:
    """Add ``shift`` to the classifier's bias, so a saved model predicts calibrated on its own.

    Returns False when the model has no linear head with one bias per label (nothing is changed).
    """
    import torch

    head = getattr(model, "classifier", None)
    bias = getattr(head, "bias", None)
    if bias is None or tuple(bias.shape) != (len(shift),):
        return False
    with torch.no_grad():
        bias.add_(torch.as_tensor(shift, dtype=bias.dtype, device=bias.device))
    return True
