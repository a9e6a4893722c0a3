"""Tasks: the examples of one domain (for ARSC, one domain × threshold) or one pool of classes, and the
fixed support/query pairs that evaluation uses.

Label spaces: a task's ``labels`` are ids into its own ``label_names``. When every task shares one
vocabulary (ARSC's negative/positive, a review set's labels), those ids are the model's head rows
and episodes keep them. When tasks are draws of classes from a pool (``TaskCollection.new_classes``),
an episode numbers its N classes 0..N-1 itself (:class:`~.sampler.Episode` ``classes``), so no head
row means one class across tasks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def class_name_text(label: str) -> str:
    """A class name as a text to encode: ``card_arrival`` → ``card arrival`` (``_`` and ``-`` are spaces)."""
    return " ".join(re.split(r"[_\-\s]+", label)).strip() or label


@dataclass
class TaskExamples:
    """The examples of one task in one split. ``labels`` are ids into ``label_names`` (the collection's
    label names when that is None)."""

    name: str
    domain: str
    texts: list[str]
    labels: np.ndarray
    source: str = ""
    input_ids: list[np.ndarray] | None = field(default=None, repr=False)
    label_names: list[str] | None = field(default=None, repr=False)
    # Token ids of each label id's class_name_text (set with input_ids): what with_class_names adds.
    name_input_ids: list[np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.texts)

    def by_label(self) -> dict[int, np.ndarray]:
        """Label id → indices of this task's examples with that label (sorted, so sampling is stable)."""
        return {int(lab): np.flatnonzero(self.labels == lab) for lab in np.unique(self.labels)}

    def subset(self, indices: np.ndarray, name: str | None = None) -> TaskExamples:
        indices = np.asarray(indices, dtype=np.int64)
        return TaskExamples(
            name=name or self.name,
            domain=self.domain,
            texts=[self.texts[i] for i in indices],
            labels=self.labels[indices],
            source=self.source,
            input_ids=None if self.input_ids is None else [self.input_ids[i] for i in indices],
            label_names=self.label_names,
            name_input_ids=self.name_input_ids,
        )

    def relabelled(self, indices: np.ndarray, classes: np.ndarray, name: str | None = None) -> TaskExamples:
        """The examples at ``indices`` with labels renumbered: class ``classes[j]`` becomes ``j``."""
        sub = self.subset(indices, name)
        local = np.full(int(self.labels.max()) + 1 if len(self.labels) else 1, -1, dtype=np.int64)
        local[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
        sub.labels = local[sub.labels]
        names = self.label_names
        sub.label_names = [names[int(c)] for c in classes] if names is not None else None
        if self.name_input_ids is not None:
            sub.name_input_ids = [self.name_input_ids[int(c)] for c in classes]
        return sub

    def with_class_names(self, label_names: Sequence[str] | None = None) -> TaskExamples:
        """These examples and one more for each class present: its name as a text (:func:`class_name_text`).

        A support set then carries what its labels say (``Params.label_names_as_support``): at one shot
        a class's name is often as telling as its one example. ``label_names``: the names of the label
        ids when the task has none of its own (the collection's)."""
        names = self.label_names or label_names
        if names is None:
            raise ValueError(f"task '{self.name}' has no label names to add")
        present = np.unique(self.labels)
        input_ids = None
        if self.input_ids is not None:
            if self.name_input_ids is None:
                raise ValueError(f"task '{self.name}': tokenize its class names with its texts")
            input_ids = self.input_ids + [self.name_input_ids[int(c)] for c in present]
        return TaskExamples(
            name=self.name,
            domain=self.domain,
            texts=self.texts + [class_name_text(names[int(c)]) for c in present],
            labels=np.concatenate([self.labels, present]),
            source=self.source,
            input_ids=input_ids,
            label_names=self.label_names,
            name_input_ids=self.name_input_ids,
        )


@dataclass
class FixedTask:
    """An evaluation task: adapt on ``support``, score on ``query``. ``classes``: the names of the task's
    label ids (None: the collection's label names)."""

    name: str
    support: TaskExamples
    query: TaskExamples
    classes: list[str] | None = None


@dataclass
class TaskCollection:
    """Everything a run needs: training tasks to sample episodes from, validation and test tasks."""

    label_names: list[str]
    train: list[TaskExamples]
    validation: list[TaskExamples] = field(default_factory=list)
    validation_fixed: list[FixedTask] = field(default_factory=list)
    test: list[FixedTask] = field(default_factory=list)
    test_pool: list[TaskExamples] = field(default_factory=list)
    validation_is_default: bool = False  # validation tasks chosen by the format, not by the user
    new_classes: bool = False  # tasks are draws of classes from pools: episodes number their classes 0..N-1

    def all_examples(self) -> list[TaskExamples]:
        """Every TaskExamples object once (for tokenizing everything in one pass)."""
        out = list(self.train) + list(self.validation)
        for task in self.validation_fixed:
            out += [task.support, task.query]
        return out + self.test_examples()

    def test_examples(self) -> list[TaskExamples]:
        """The TaskExamples objects of the test tasks alone (what evaluating a saved model reads)."""
        out = list(self.test_pool)
        for task in self.test:
            out += [task.support, task.query]
        return out
