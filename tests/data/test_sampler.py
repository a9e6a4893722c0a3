"""Episodes: balanced, deterministic, independent of how a meta-batch is split, never from test domains."""

from __future__ import annotations

import numpy as np
import pytest

from kshot.config import DataConfig, Params
from kshot.data import EpisodeSampler, TaskExamples, load_tasks
from kshot.errors import DataError

from .. import synthetic

LABELS = ["negative", "positive"]


def make_task(name: str, labels: list[int]) -> TaskExamples:
    return TaskExamples(
        name=name, domain=name, texts=[f"{name} text {i}" for i in range(len(labels))], labels=np.array(labels)
    )


def three_class_tasks() -> list[TaskExamples]:
    rng = np.random.default_rng(0)
    return [make_task(f"task{t}", rng.permutation(np.repeat([0, 1, 2], [20, 30, 25])).tolist()) for t in range(4)]


def params(**kwargs) -> Params:
    return Params.from_dict({"k_support": 3, "k_query": 4, "meta_batch_size": 4, "seed": 1, **kwargs})


def positions(task_texts: list[str]) -> list[int]:
    return [int(t.rsplit(" ", 1)[1]) for t in task_texts]


def test_per_class_sampling_is_balanced():
    sampler = EpisodeSampler(three_class_tasks(), params(query_sampling="per_class"), ["a", "b", "c"])
    for step in range(20):
        for ep in sampler.meta_batch(step):
            assert np.bincount(ep.support.labels, minlength=3).tolist() == [3, 3, 3]
            assert np.bincount(ep.query.labels, minlength=3).tolist() == [4, 4, 4]
            assert not set(ep.support.texts) & set(ep.query.texts)


def test_n_way_picks_that_many_classes():
    sampler = EpisodeSampler(three_class_tasks(), params(n_way=2, query_sampling="per_class"), ["a", "b", "c"])
    seen = set()
    for step in range(30):
        ep = sampler.episode(step, 0)
        classes = np.unique(ep.support.labels)
        assert len(classes) == 2 and np.bincount(ep.support.labels)[classes].tolist() == [3, 3]
        assert set(np.unique(ep.query.labels)) == set(classes)
        seen.add(tuple(classes))
    assert len(seen) == 3  # every pair of classes occurs


def test_total_sampling_sizes():
    sampler = EpisodeSampler(
        three_class_tasks(),
        params(k_support=5, k_query=7, support_sampling="total", query_sampling="total"),
        ["a", "b", "c"],
    )
    supports = []
    for step in range(30):
        ep = sampler.episode(step, 0)
        assert len(ep.support) == 5 and len(ep.query) == 7
        assert not set(ep.support.texts) & set(ep.query.texts)
        supports.append(np.bincount(ep.support.labels, minlength=3))
    # 'total' draws at random, so some supports are unbalanced (per_class never is)
    assert any(len(set(s.tolist())) > 1 for s in supports)


def test_same_seed_same_episodes_other_seed_other_episodes():
    tasks = three_class_tasks()
    a = EpisodeSampler(tasks, params(seed=3), ["a", "b", "c"])
    b = EpisodeSampler(tasks, params(seed=3), ["a", "b", "c"])
    c = EpisodeSampler(tasks, params(seed=4), ["a", "b", "c"])

    def trace(sampler):
        return [
            (ep.task, ep.support.texts, ep.query.texts, ep.seed) for step in range(5) for ep in sampler.meta_batch(step)
        ]

    assert trace(a) == trace(b)
    assert trace(a) != trace(c)


def test_steps_and_streams_differ():
    tasks = three_class_tasks()
    train = EpisodeSampler(tasks, params(), ["a", "b", "c"], stream="train")
    other = EpisodeSampler(tasks, params(), ["a", "b", "c"], stream="validation")
    assert train.episode(0, 0).support.texts != train.episode(1, 0).support.texts
    assert train.episode(0, 0).support.texts != other.episode(0, 0).support.texts


def test_episode_does_not_depend_on_which_indices_a_process_asks_for():
    sampler = EpisodeSampler(three_class_tasks(), params(meta_batch_size=4), ["a", "b", "c"])
    whole = sampler.meta_batch(7)
    # two processes splitting the meta-batch as the trainer does: rank::world
    rank0, rank1 = sampler.meta_batch(7, [0, 2]), sampler.meta_batch(7, [1, 3])
    for ep, ref in zip(rank0 + rank1, [whole[0], whole[2], whole[1], whole[3]]):
        assert (ep.task, ep.support.texts, ep.query.texts, ep.seed) == (
            ref.task,
            ref.support.texts,
            ref.query.texts,
            ref.seed,
        )


def test_support_order_is_shuffled_but_query_is_sorted():
    sampler = EpisodeSampler([make_task("t", [0, 1] * 30)], params(k_support=5), LABELS)
    ep = sampler.episode(0, 0)
    assert ep.support.labels.tolist() != sorted(ep.support.labels.tolist()) or positions(ep.support.texts) != sorted(
        positions(ep.support.texts)
    )
    assert positions(ep.query.texts) == sorted(positions(ep.query.texts))


def test_no_test_domain_in_training_episodes(review_json):
    config = DataConfig.from_dict(
        {
            "format": "review_json",
            "path": str(review_json),
            "test_domains": ["domain6", "domain7"],
            "validation_domains": ["domain5"],
        }
    )
    tasks = load_tasks(config)
    sampler = EpisodeSampler(tasks.train, params(k_support=4, k_query=8), tasks.label_names)
    test_texts = {t for task in tasks.test_pool for t in task.texts}
    domains = set()
    for step in range(50):
        for ep in sampler.meta_batch(step):
            domains.add(ep.support.domain)
            assert ep.support.domain == ep.query.domain
            assert not (set(ep.support.texts) | set(ep.query.texts)) & test_texts
    assert domains == {f"domain{i}" for i in range(5)}


def test_fixed_tasks_are_stable_across_calls_and_samplers():
    tasks = three_class_tasks()
    first = EpisodeSampler(tasks, params(), ["a", "b", "c"], stream="test").fixed_tasks(6, query_size=None)
    again = EpisodeSampler(tasks, params(), ["a", "b", "c"], stream="test").fixed_tasks(6, query_size=None)
    assert [t.name for t in first] == ["task0#0", "task1#0", "task2#0", "task3#0", "task0#1", "task1#1"]
    for a, b in zip(first, again):
        assert (a.name, a.support.texts, a.query.texts) == (b.name, b.support.texts, b.query.texts)
    # query_size=None: every example not in the support set
    task0 = first[0]
    assert len(task0.support) + len(task0.query) == 75
    assert not set(task0.support.texts) & set(task0.query.texts)
    # the second episode of the same task is another draw
    assert first[0].support.texts != first[4].support.texts


def test_fixed_tasks_query_size():
    fixed = EpisodeSampler(three_class_tasks(), params(), ["a", "b", "c"], stream="test").fixed_tasks(2, query_size=10)
    assert [t.name for t in fixed] == ["task0", "task1"]
    assert all(len(t.query) == 10 for t in fixed)


def test_small_domain_names_the_task_and_counts():
    small = make_task("tiny_domain", [0] * 5 + [1] * 9)
    with pytest.raises(DataError) as err:
        EpisodeSampler(
            [three_class_tasks()[0], small],
            params(k_support=4, k_query=3, query_sampling="per_class"),
            ["negative", "positive", "x"],
        )
    message = str(err.value)
    assert "task 'tiny_domain'" in message
    assert "each class needs 7 examples" in message
    assert "negative: 5, positive: 9" in message
    assert "Lower k_support/k_query" in message


def test_domain_with_fewer_examples_than_k_plus_l():
    small = make_task("short", [0] * 6 + [1] * 6)
    with pytest.raises(DataError, match=r"task 'short' has 12 examples, fewer than k_support \+ k_query = 14"):
        EpisodeSampler([small], params(k_support=4, k_query=6), LABELS)


def test_skip_small_drops_the_task_instead():
    small = make_task("short", [0] * 6 + [1] * 6)
    big = make_task("big", [0, 1] * 20)
    sampler = EpisodeSampler([small, big], params(k_support=4, k_query=6), LABELS, skip_small=True)
    assert [t.name for t in sampler.tasks] == ["big"]
    with pytest.raises(DataError, match="no tasks to sample"):
        EpisodeSampler([small], params(k_support=4, k_query=6), LABELS, skip_small=True)


def test_single_class_task_cannot_give_an_episode():
    with pytest.raises(DataError, match="task 'mono' cannot give a 2-way episode"):
        EpisodeSampler([make_task("mono", [1] * 40)], params(), LABELS)


def test_small_domain_in_a_real_source_names_the_file(tmp_path):
    rows = synthetic.make_rows(3, 30) + synthetic.make_rows(1, 6, domain_names=["small"])
    path = synthetic.write_table(tmp_path / "data.jsonl", rows)
    tasks = load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))
    with pytest.raises(DataError, match=r"task 'small' \(.*data.jsonl\)"):
        EpisodeSampler(tasks.train, params(k_support=2, k_query=4), tasks.label_names)
