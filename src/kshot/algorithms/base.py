"""The interface every algorithm implements, and the pieces they share.

A :class:`MetaAlgorithm` owns the meta-parameters and one working ("fast") model. The trainer calls
``meta_step`` with this process's episodes; evaluation calls ``adapt`` → ``predict`` → ``reset`` per
task. The fast model is the same object throughout: weights are copied in place, never deep-copied.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedModel

from ..config import Params
from ..data import Episode, TaskExamples, collate, length_sorted_batches


class MetaAlgorithm(ABC):
    """Base class of the meta-learning algorithms."""

    name: ClassVar[str]

    def __init__(self, model: PreTrainedModel, params: Params, accelerator, pad_token_id: int):
        self.model = model
        self.params = params
        self.accelerator = accelerator
        self.pad_token_id = pad_token_id
        self.device = accelerator.device if accelerator is not None else torch.device("cpu")
        # New classes (see heads.py): the model's head is one meta-learned row; each task builds its own N rows.
        self.new_classes = is_new_class_model(model)
        self.adapted_labels: list[str] | None = None  # the class names of the last adapt (new classes)

    # ------------------------------------------------------------------ meta-training
    @abstractmethod
    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        """One outer update from this process's ``episodes`` (``total_tasks`` across all processes).

        Returns scalar metrics to log (at least ``loss``), already averaged across processes.
        """

    # ------------------------------------------------------------------ few-shot use
    @abstractmethod
    def adapt(self, support: TaskExamples, steps: int, seed: int = 0) -> dict[str, float]:
        """Adapt the working model to ``support`` in place, starting from the meta-parameters."""

    @abstractmethod
    def reset(self) -> None:
        """Put the meta-parameters back into the working model."""

    # ------------------------------------------------------------------ evaluation
    feature_cache: dict | None = None

    def caches_features(self) -> bool:
        """Whether the features a task's head reads stay the same for every task of an evaluation (the
        body is not adapted): then :meth:`caching_features` lets each distinct text be encoded once."""
        return False

    @contextlib.contextmanager
    def caching_features(self):
        """Within: features are cached across tasks by token ids (for algorithms that allow it). Nothing
        may change the meta-parameters inside."""
        self.feature_cache = {} if self.caches_features() else None
        try:
            yield
        finally:
            self.feature_cache = None

    def predict(self, task: TaskExamples, batch_size: int) -> np.ndarray:
        """Logits of the adapted working model for every example of ``task``, in order."""
        return predict_logits(self.model, task, batch_size, self.pad_token_id, self.device, self.accelerator)

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything learned or needed to resume: meta-parameters, outer optimizer state."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export_model(self, adapted: bool = False) -> PreTrainedModel:
        """The model ready for ``save_pretrained``: the meta-parameters, or (``adapted``) the weights
        after the last ``adapt``."""
        if not adapted:
            self.reset()
        return self.model

    def load_pretrained(self, model_dir: str) -> None:
        """Prepare to adapt a saved model: the loaded weights become the meta-parameters; algorithms
        with extra learned state (learning rates, a learned optimizer) read it from ``model_dir``."""
        self.load_state_dict(self.initial_state())

    def initial_state(self) -> dict[str, Any]:
        """State taken from the current weights of the working model."""
        return {"meta": [p.detach().clone() for p in self.model.parameters()]}

    def usage_note(self, adapted: bool) -> str | None:
        """How to use a saved folder, for its model card, when it is not a plain classifier."""
        return None

    def extra_files(self) -> dict[str, Any]:
        """Files to save beside the model (e.g. a learned optimizer); name → JSON object or writer."""
        return {}


NEW_CLASSES_KEY = "kshot_new_classes"
"""Model config attribute (saved in config.json): the head is a per-task rule, not one row per label."""


def is_new_class_model(model) -> bool:
    return bool(getattr(model.config, NEW_CLASSES_KEY, False))


def autocast(accelerator):
    """The accelerator's autocast (bf16/fp16 under mixed precision; a no-op in float32). Without an
    accelerator, nothing changes: an enclosing autocast (``predict_texts``'s) still applies."""
    return accelerator.autocast() if accelerator is not None else contextlib.nullcontext()


def full_precision(device) -> torch.autocast:
    """Leave an enclosing autocast: what runs inside (small heads and scorers) keeps the weights' precision."""
    return torch.autocast(torch.device(device).type, enabled=False)


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def support_indices(n: int, steps: int, batch_size: int, generator: np.random.Generator):
    """``steps`` index batches cycling through shuffled passes over ``n`` support examples."""
    order = np.empty(0, dtype=np.int64)
    for _ in range(steps):
        if len(order) < min(batch_size, n):
            order = np.concatenate([order, generator.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def support_batches(task: TaskExamples, steps: int, batch_size: int, pad_token_id: int, generator: np.random.Generator):
    """``steps`` batches cycling through shuffled passes over the support set."""
    for idx in support_indices(len(task), steps, batch_size, generator):
        yield collate([task.input_ids[i] for i in idx], pad_token_id, task.labels[idx])


@torch.no_grad()
def predict_logits(
    model, task: TaskExamples, batch_size: int, pad_token_id: int, device, accelerator=None
) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = None  # as many columns as the head has rows (a new-class task's head is the task's own)
    for idx, batch in length_sorted_batches(task, batch_size, pad_token_id):
        batch.pop("labels")
        with autocast(accelerator):
            logits = model(**to_device(batch, device)).logits
        if out is None:
            out = np.zeros((len(task), logits.shape[1]), dtype=np.float32)
        out[idx] = logits.float().cpu().numpy()
    model.train(was_training)
    return out if out is not None else np.zeros((0, model.config.num_labels), dtype=np.float32)


def query_loss(model, task: TaskExamples, batch_size: int, pad_token_id: int, device, accelerator=None) -> float:
    """Mean cross-entropy of the working model on ``task`` (no gradient)."""
    logits = torch.from_numpy(predict_logits(model, task, batch_size, pad_token_id, device, accelerator))
    return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(task.labels)))


def reduce_mean(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics across processes (one collective for all of them)."""
    if accelerator is None or accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist()))
