"""New classes: per-task label spaces, class-pool tasks, the class_splits layout, evaluation shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kshot.config import KshotConfig, Params
from kshot.data import EpisodeSampler, load_tasks
from kshot.errors import ConfigError, DataError
from kshot.training.setup import evaluation_shape

from .. import synthetic


def config(path, **data) -> KshotConfig:
    return KshotConfig.from_dict({"data": {"format": "class_splits", "path": str(path), **data}})


def params(**overrides) -> Params:
    return Params.from_dict({"n_way": 3, "k_support": 2, "k_query": 2, "query_sampling": "per_class", **overrides})


def test_the_class_splits_layout_loads_with_one_config_line(tmp_path):
    root = synthetic.write_class_splits(tmp_path / "split")
    tasks = load_tasks(KshotConfig.from_dict({"data": {"format": "class_splits", "path": str(root)}}).data)
    assert tasks.new_classes
    pools = {t.name: t for t in tasks.train + tasks.validation + tasks.test_pool}
    assert {n: len(t.label_names) for n, t in pools.items()} == {"train": 6, "validation": 4, "test": 5}
    assert pools["test"].label_names == [f"intent_{c}" for c in range(10, 15)]
    # Each label id names the class of its text (texts hold their class's keywords).
    for pool in pools.values():
        for text, label in zip(pool.texts, pool.labels):
            c = int(pool.label_names[label].split("_")[1])
            assert any(w in text for w in synthetic.intent_words(c))


def test_overlapping_class_lists_are_refused_naming_the_class(tmp_path):
    root = synthetic.write_class_splits(tmp_path / "split")
    (root / "labels.test.txt").write_text("intent_10\nintent_0\n")
    with pytest.raises(DataError, match="'intent_0' are both train and test classes"):
        load_tasks(config(root).data)
    with pytest.raises(ConfigError, match="'intent_1' are listed both in 'data.test_classes'"):
        config(root, train_classes=["intent_1", "intent_2"], test_classes=["intent_1"])


def test_a_listed_class_without_examples_is_refused(tmp_path):
    root = synthetic.write_class_splits(tmp_path / "split")
    (root / "labels.valid.txt").write_text("intent_6\nnot_a_class\n")
    with pytest.raises(DataError, match="validation class.*no example.*'not_a_class'"):
        load_tasks(config(root).data)


def test_any_table_without_domains_gives_class_pools_from_lists_or_files(tmp_path):
    root = synthetic.write_class_splits(tmp_path / "split")
    rows = [json.loads(line) for split in ("train", "valid", "test") for line in (root / f"{split}.jsonl").open()]
    table = synthetic.write_table(tmp_path / "all.csv", rows, {"sentence": "utterance", "label": "intent"})
    (tmp_path / "test.txt").write_text("intent_12\nintent_13\nintent_14\n")
    cfg = KshotConfig.from_dict(
        {
            "data": {
                "format": "hf",
                "path": str(table),
                "text_column": "utterance",
                "label_column": "intent",
                "domain_column": None,
                "validation_classes": ["intent_10", "intent_11"],
                "test_classes": str(tmp_path / "test.txt"),
            }
        }
    )
    assert cfg.data.task_kind() == "classes"
    tasks = load_tasks(cfg.data)
    assert tasks.new_classes
    assert len(tasks.train[0].label_names) == 10  # every class not held out
    assert tasks.test_pool[0].label_names == ["intent_12", "intent_13", "intent_14"]
    missing = KshotConfig.from_dict({"data": {**cfg.data.to_dict(), "test_classes": None}})
    with pytest.raises(DataError, match="data.test_classes must name the held-out test classes"):
        load_tasks(missing.data)


def test_tasks_classes_is_refused_for_formats_whose_tasks_are_domains():
    with pytest.raises(ConfigError, match="'data.tasks' is 'classes', but the arsc format"):
        KshotConfig.from_dict({"data": {"format": "arsc", "tasks": "classes"}})


def test_training_episodes_number_their_classes_afresh_in_random_order(tmp_path):
    tasks = load_tasks(config(synthetic.write_class_splits(tmp_path / "split")).data)
    sampler = EpisodeSampler(tasks.train, params(), tasks.label_names, new_classes=True)
    seen: dict[str, set[int]] = {}
    for step in range(30):
        ep = sampler.episode(step, 0)
        assert sorted(set(ep.support.labels)) == [0, 1, 2] and sorted(set(ep.query.labels)) == [0, 1, 2]
        assert len(ep.classes) == 3 and ep.support.label_names == ep.classes
        for text, label in zip(ep.support.texts, ep.support.labels):
            c = int(ep.classes[label].split("_")[1])
            assert any(w in text for w in synthetic.intent_words(c))
        assert [tasks.train[0].label_names[i] for i in ep.class_ids] == ep.classes
        for local, name in enumerate(ep.classes):
            seen.setdefault(name, set()).add(local)
    # No row of a head can mean one class: every class took more than one id.
    assert all(len(ids) > 1 for ids in seen.values())
    again = EpisodeSampler(tasks.train, params(), tasks.label_names, new_classes=True).episode(7, 0)
    first = sampler.episode(7, 0)
    assert again.classes == first.classes and again.support.texts == first.support.texts


def test_evaluation_episodes_follow_the_protocol_and_see_only_their_classes(tmp_path):
    root = synthetic.write_class_splits(tmp_path / "split")
    for way, n in ((3, 3), ("all", 5)):
        cfg = config(root, eval_way=way, eval_shots=1, eval_queries=4)
        tasks = load_tasks(cfg.data)
        shape, size, mode = evaluation_shape(cfg, params(), True)
        sampler = EpisodeSampler(
            tasks.test_pool, params(), tasks.label_names, stream="test", new_classes=True, shape=shape
        )
        fixed = sampler.fixed_tasks(20, size, mode)
        for task in fixed:
            assert len(task.classes) == n and set(task.classes) <= set(tasks.test_pool[0].label_names)
            assert np.bincount(task.support.labels).tolist() == [1] * n
            assert np.bincount(task.query.labels).tolist() == [4] * n
            assert task.classes == sorted(task.classes, key=lambda c: int(c.split("_")[1]))
        assert [t.support.texts for t in fixed] == [t.support.texts for t in sampler.fixed_tasks(20, size, mode)]


def test_class_names_as_text():
    from kshot.data.tasks import class_name_text

    assert class_name_text("card_arrival") == "card arrival"
    assert class_name_text("top-up__failed ") == "top up failed"
    assert class_name_text("positive") == "positive"


def test_class_names_join_every_support_set_after_the_same_draws(tmp_path):
    """With label_names_as_support each support set holds one more example a class, its name (tokenized
    with the texts), numbered as the episode numbers that class; the draws are the flag-off episode's."""
    from transformers import AutoTokenizer

    from kshot.data import tokenize_collection
    from kshot.data.tasks import class_name_text

    root = synthetic.write_class_splits(tmp_path / "split")
    model = synthetic.build_tiny_model(tmp_path / "model", words=synthetic.intent_vocabulary() + ["intent"])
    tokenizer = AutoTokenizer.from_pretrained(model)
    tasks = load_tasks(config(root).data)
    tokenize_collection(tasks, tokenizer, 32)
    cfg = config(root, eval_way="all", eval_shots=1, eval_queries=3)
    shape, size, mode = evaluation_shape(cfg, params(), True)

    def episodes(flag: bool):  # one training episode and one all-way test episode
        p = params(label_names_as_support=flag)
        train = EpisodeSampler(tasks.train, p, tasks.label_names, new_classes=True).episode(3, 0)
        test = EpisodeSampler(tasks.test_pool, p, tasks.label_names, stream="test", new_classes=True, shape=shape)
        return train, test.fixed_tasks(2, size, mode)[1]

    for named, before in zip(episodes(True), episodes(False)):
        classes = named.classes
        n, k = len(classes), len(before.support)
        assert named.support.texts[:k] == before.support.texts and named.query.texts == before.query.texts
        assert named.support.texts[k:] == [class_name_text(c) for c in classes]
        assert named.support.labels[k:].tolist() == list(range(n))
        name_ids = tokenizer([class_name_text(c) for c in classes])["input_ids"]
        assert [ids.tolist() for ids in named.support.input_ids[k:]] == name_ids
        assert named.support.input_ids[:k] == before.support.input_ids


def test_class_names_join_shared_label_support_sets(review_json):
    """Domain tasks (one label vocabulary): the support set gains 'negative' and 'positive' as examples."""
    tasks = load_tasks(KshotConfig.from_dict({"data": {"format": "review_json", "path": str(review_json)}}).data)
    p = Params.from_dict({"k_support": 2, "k_query": 2, "label_names_as_support": True})
    ep = EpisodeSampler(tasks.train, p, tasks.label_names).episode(0, 0)
    assert ep.support.texts[-2:] == tasks.label_names and ep.support.labels[-2:].tolist() == [0, 1]
    assert len(ep.support) == 2 * 2 + 2
