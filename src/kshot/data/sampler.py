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


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode())


class EpisodeSampler:
    """Samples N-way K-shot (or K-in-total) episodes from a list of tasks."""

    def __init__(
        self,
        tasks: Sequence[TaskExamples],
        params: Params,
        label_names: Sequence[str],
        seed: int | None = None,
        stream: str = "train",
        skip_small: bool = False,
    ):
        """``skip_small`` drops (and logs) tasks too small for an episode instead of stopping: for
        task lists the user did not choose, like ARSC's default validation on every dev file."""
        self.params = params
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

    def _need_per_class(self) -> int:
        p = self.params
        need = p.k_support if p.support_sampling == "per_class" else 1
        if p.query_sampling == "per_class":
            need += p.k_query
        return need

    def _check(self, task: TaskExamples, by_label: dict[int, np.ndarray]) -> None:
        p = self.params
        n_way = p.n_way or max(len(by_label), 2)  # a one-class task still needs a 2-way episode
        need = self._need_per_class()
        rich = [lab for lab, idx in by_label.items() if len(idx) >= need]
        where = f"task '{task.name}'" + (f" ({task.source})" if task.source else "")
        if len(rich) < max(n_way, 2 if p.n_way is None else n_way):
            counts = ", ".join(f"{self.label_names[lab]}: {len(idx)}" for lab, idx in sorted(by_label.items()))
            raise DataError(
                f"{where} cannot give a {n_way}-way episode: each class needs {need} examples "
                f"(k_support={p.k_support}, k_query={p.k_query}, sampling {p.support_sampling}/{p.query_sampling}); "
                f"it has {counts}. Lower k_support/k_query or leave this domain out of the domain lists."
            )
        k_total = p.k_support * (n_way if p.support_sampling == "per_class" else 1)
        q_total = p.k_query * (n_way if p.query_sampling == "per_class" else 1)
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
        return self._sample(self.tasks[t], self._by_label[t], rng, self.params.k_query)

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
    ) -> Episode:
        p = self.params
        query_mode = query_mode or p.query_sampling
        need = self._need_per_class()
        eligible = sorted(lab for lab, idx in by_label.items() if len(idx) >= need)
        n_way = p.n_way or len(eligible)
        classes = np.sort(rng.choice(eligible, size=n_way, replace=False))
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
        return Episode(task.name, task.subset(support), task.subset(np.sort(query)), seed=int(rng.integers(2**31 - 1)))

    def fixed_tasks(self, count: int, query_size: int | None) -> list[FixedTask]:
        """``count`` evaluation tasks, cycling through the tasks in order: the same on every call."""
        out = []
        for i in range(count):
            t = i % len(self.tasks)
            rng = np.random.default_rng([self.seed, self.stream, 1, i])  # apart from every training step
            ep = self._sample(self.tasks[t], self._by_label[t], rng, query_size, query_mode="total")
            name = self.tasks[t].name if count <= len(self.tasks) else f"{self.tasks[t].name}#{i // len(self.tasks)}"
            out.append(FixedTask(name=name, support=ep.support, query=ep.query))
        return out
