"""Accuracy and macro-F1 (F1 averaged over the task's classes, so always answering the majority class
scores low even on imbalanced query sets)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for lab in labels:
        tp = np.sum((y_pred == lab) & (y_true == lab))
        fp = np.sum((y_pred == lab) & (y_true != lab))
        fn = np.sum((y_pred != lab) & (y_true == lab))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def confidence_95(values: Sequence[float]) -> float:
    """Half-width of the normal 95% confidence interval of the mean of ``values`` (0 for one value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def summarize(tasks: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over tasks (the ARSC convention), with the 95% confidence interval of each mean
    over tasks (the few-shot literature's ± for episodes) and the number of tasks."""
    if not tasks:
        return {}
    out: dict[str, float] = {}
    for k in ("accuracy", "macro_f1"):
        values = [t[k] for t in tasks.values()]
        out[k] = float(np.mean(values))
        out[f"{k}_ci95"] = confidence_95(values)
    out["tasks"] = len(tasks)
    return out


def format_table(results: dict, title: str = "") -> str:
    """Per-task accuracy (percent) and macro-F1, and their mean: what `kshot evaluate` and `attempts show` print."""
    rows = [f"{'task':<28} {'accuracy':>9} {'macro-F1':>9} {'n':>6}"]
    for name, m in results["tasks"].items():
        rows.append(f"{name:<28} {100 * m['accuracy']:>9.2f} {m['macro_f1']:>9.3f} {m.get('n_query', 0):>6}")
    mean = results.get("mean", {})
    if mean:
        rows.append(f"{'mean':<28} {100 * mean['accuracy']:>9.2f} {mean['macro_f1']:>9.3f}")
    return (title + "\n" if title else "") + "\n".join(rows)
