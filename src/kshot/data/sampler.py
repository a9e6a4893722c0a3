"""Deterministic episodes: indices are sampled per episode from per-task label indices.

An episode is a pure function of ``(seed, stream, step, index)``, so the tasks of a step are the same
whatever the number of processes and after a resume.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Params
from ..errors import DataError
from .tasks import FixedTask, TaskExamples

logger = logging.getLogger(__name__)


@dataclass
class Episode:
    task: str
    support: TaskExamples
    query: TaskExamples
    seed: int = 0  # seeds the episode's own randomness (batch order, dropout), whichever process runs it
    # New classes: the names of the episode's label ids 0..N-1 and their ids in the task (None: shared labels).
    classes: list[str] | None = None
    class_ids: np.ndarray | None = None
    pool_classes: int = 0  # how many classes the task's pool holds (class_ids index them)


@dataclass(frozen=True)
class Shape:
    """How many classes and examples an episode draws (see the Params fields of the same names)."""

    n_way: int | None
    k_support: int
    k_query: int | None
    support_sampling: str = "per_class"
    query_sampling: str = "total"

    @classmethod
    def of(cls, params: Params) -> Shape:
        return cls(params.n_way, params.k_support, params.k_query, params.support_sampling, params.query_sampling)

    def need_per_class(self) -> int:
        need = self.k_support if self.support_sampling == "per_class" else 1
        if self.query_sampling == "per_class" and self.k_query:
            need += self.k_query
        return need


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode())


class EpisodeSampler:
    """Samples N-way K-shot (or K-in-total) episodes from a list of tasks.

    ``new_classes``: an episode's labels are renumbered 0..N-1 over the classes it drew, in a random
    order for training episodes (so no algorithm can learn what a head row means) and in the task's
    order for evaluation tasks; ``shape`` replaces the params' episode shape (evaluation episodes)."""

    def __init__(
        self,
        tasks: Sequence[TaskExamples],
        params: Params,
        label_names: Sequence[str],
        seed: int | None = None,
        stream: str = "train",
        skip_small: bool = False,
        new_classes: bool = False,
        shape: Shape | None = None,
    ):
        """``skip_small`` drops (and logs) tasks too small for an episode instead of stopping: for
        task lists the user did not choose, like ARSC's default validation on every dev file."""
        self.params = params
        self.shape = shape or Shape.of(params)
        self.new_classes = new_classes
        self.label_names = list(label_names)
        self.seed = params.seed if seed is None else seed
        self.stream = _stream_id(stream)
        self.tasks, self._by_label = [], []
        for task in tasks:
            by_label = task.by_label()
            try:
                self._check(task, by_label)
            except DataError as err:
                if not skip_small:
                    raise
                logger.info("Skipping %s for %s episodes: %s", task.name, stream, err)
                continue
            self.tasks.append(task)
            self._by_label.append(by_label)
        if not self.tasks:
            raise DataError(
                f"There are no tasks to sample {stream} episodes from;"
                " check the data.*_domains lists and k_support/k_query."
            )

    def _check(self, task: TaskExamples, by_label: dict[int, np.ndarray]) -> None:
        p = self.shape
        n_way = p.n_way or max(len(by_label), 2)  # a one-class task still needs a 2-way episode
        need = p.need_per_class()
        rich = [lab for lab, idx in by_label.items() if len(idx) >= need]
        where = f"task '{task.name}'" + (f" ({task.source})" if task.source else "")
        names = task.label_names or self.label_names
        if len(rich) < max(n_way, 2 if p.n_way is None else n_way):
            counts = ", ".join(f"{names[lab]}: {len(idx)}" for lab, idx in sorted(by_label.items())[:20])
            more = f" and {len(by_label) - 20} more" if len(by_label) > 20 else ""
            raise DataError(
                f"{where} cannot give a {n_way}-way episode: each class needs {need} examples "
                f"(k_support={p.k_support}, k_query={p.k_query}, sampling {p.support_sampling}/{p.query_sampling}); "
                f"it has {len(by_label)} classes ({counts}{more}). Lower k_support/k_query (or n_way, or the "
                "data.eval_* settings) or leave this task out."
            )
        k_total = p.k_support * (n_way if p.support_sampling == "per_class" else 1)
        q_total = (p.k_query or 0) * (n_way if p.query_sampling == "per_class" else 1)
        if len(task) < k_total + q_total:
            raise DataError(
                f"{where} has {len(task)} examples, fewer than k_support + k_query = {k_total + q_total}. "
                "Lower k_support/k_query or leave this domain out of the domain lists."
            )

    def rng(self, step: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.stream, 0, step, index])

    def episode(self, step: int, index: int) -> Episode:
        rng = self.rng(step, index)
        t = int(rng.integers(len(self.tasks)))
        return self._sample(self.tasks[t], self._by_label[t], rng, self.shape.k_query, shuffle=True)

    def meta_batch(self, step: int, indices: Sequence[int] | None = None) -> list[Episode]:
        indices = range(self.params.meta_batch_size) if indices is None else indices
        return [self.episode(step, i) for i in indices]

    def _sample(
        self,
        task: TaskExamples,
        by_label: dict[int, np.ndarray],
        rng: np.random.Generator,
        k_query: int | None,
        query_mode: str | None = None,
        shuffle: bool = False,
    ) -> Episode:
        """``shuffle``: with new classes, number the episode's classes in a random order (training)."""
        p = self.shape
        query_mode = query_mode or p.query_sampling
        need = p.need_per_class()
        eligible = sorted(lab for lab, idx in by_label.items() if len(idx) >= need)
        n_way = p.n_way or len(eligible)
        drawn = rng.choice(eligible, size=n_way, replace=False)
        classes = np.sort(drawn)
        pools = {int(c): rng.permutation(by_label[int(c)]) for c in classes}
        if p.support_sampling == "per_class":
            support = np.concatenate([pools[c][: p.k_support] for c in pools])
            rest = {c: pool[p.k_support :] for c, pool in pools.items()}
        else:
            everything = rng.permutation(np.concatenate(list(pools.values())))
            support, leftover = everything[: p.k_support], set(everything[p.k_support :].tolist())
            rest = {c: np.array([i for i in pool if i in leftover], dtype=np.int64) for c, pool in pools.items()}
        if k_query is None:
            query = np.concatenate(list(rest.values()))
        elif query_mode == "per_class":
            query = np.concatenate([r[:k_query] for r in rest.values()])
        else:
            remaining = np.concatenate(list(rest.values()))
            query = rng.choice(remaining, size=min(k_query, len(remaining)), replace=False)
        support = rng.permutation(support)
        seed = int(rng.integers(2**31 - 1))
        names = task.label_names or self.label_names
        if not self.new_classes:
            return Episode(
                task.name, self._support(task.subset(support), names), task.subset(np.sort(query)), seed=seed
            )
        order = drawn if shuffle else classes  # rng.choice's order is random: the episode's own numbering
        return Episode(
            task.name,
            self._support(task.relabelled(support, order), [names[int(c)] for c in order]),
            task.relabelled(np.sort(query), order),
            seed=seed,
            classes=[names[int(c)] for c in order],
            class_ids=np.asarray(order, dtype=np.int64),
            pool_classes=len(names),
        )

    def _support(self, support: TaskExamples, names: Sequence[str]) -> TaskExamples:
        # After every draw, so an episode's examples are the same with and without the names.
        return support.with_class_names(names) if self.params.label_names_as_support else support

    def fixed_tasks(self, count: int, query_size: int | None, query_mode: str = "total") -> list[FixedTask]:
        """``count`` evaluation tasks, cycling through the tasks in order: the same on every call.
        ``query_size``: query examples in total (``query_mode`` 'total') or per class ('per_class')."""
        out = []
        for i in range(count):
            t = i % len(self.tasks)
            rng = np.random.default_rng([self.seed, self.stream, 1, i])  # apart from every training step
            ep = self._sample(self.tasks[t], self._by_label[t], rng, query_size, query_mode=query_mode)
            name = self.tasks[t].name if count <= len(self.tasks) else f"{self.tasks[t].name}#{i // len(self.tasks)}"
            out.append(FixedTask(name=name, support=ep.support, query=ep.query, classes=ep.classes))
        return out
