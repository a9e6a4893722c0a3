"""Tokenize once (cached on disk), pad per batch, truncate at max_length."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from kshot.config import DataConfig
from kshot.data import TaskExamples, collate, length_sorted_batches, load_tasks, tokenize_collection, tokenize_texts

TEXTS = ["good product", "the item was very bad and broken", "love it", "great " * 40]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_tokenize_adds_special_tokens_and_truncates(tokenizer):
    ids = tokenize_texts(TEXTS, tokenizer, max_length=16)
    assert [len(x) for x in ids] == [4, 9, 4, 16]
    assert all(x[0] == tokenizer.cls_token_id and x[-1] == tokenizer.sep_token_id for x in ids)
    assert tokenizer.decode(ids[0][1:-1]) == "good product"


def test_cache_hit_returns_identical_ids(tokenizer, tmp_path):
    first = tokenize_texts(TEXTS, tokenizer, 16, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("tokens-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = tokenize_texts(TEXTS, tokenizer, 16, cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert len(second) == len(first) and all(np.array_equal(a, b) for a, b in zip(first, second))
    assert [p.name for p in tmp_path.iterdir()] == [files[0].name]  # no temporary file left


def test_cache_key_depends_on_texts_and_max_length(tokenizer, tmp_path):
    tokenize_texts(TEXTS, tokenizer, 16, cache_dir=str(tmp_path))
    tokenize_texts(TEXTS, tokenizer, 8, cache_dir=str(tmp_path))
    shorter = tokenize_texts(TEXTS[:2], tokenizer, 8, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("tokens-*.npz"))) == 3
    assert len(shorter) == 2 and max(len(x) for x in shorter) == 8


def test_tokenize_collection_shares_ids_of_repeated_texts(review_json, tokenizer, tmp_path):
    tasks = load_tasks(
        DataConfig.from_dict({"format": "review_json", "path": str(review_json), "test_domains": ["domain7"]})
    )
    tokenize_collection(tasks, tokenizer, 32, cache_dir=str(tmp_path))
    for task in tasks.all_examples():
        assert task.input_ids is not None and len(task.input_ids) == len(task)
        assert tokenizer.decode(task.input_ids[0], skip_special_tokens=True) == task.texts[0]
    # a subset keeps the ids of its examples
    sub = tasks.train[0].subset(np.array([3, 1]))
    assert np.array_equal(sub.input_ids[0], tasks.train[0].input_ids[3])


def test_tokenize_collection_test_only_leaves_training_tasks_alone(review_json, tokenizer):
    """Evaluating a saved model tokenizes its test tasks alone (ARSC: 9,000 of 64,000 texts)."""
    tasks = load_tasks(
        DataConfig.from_dict({"format": "review_json", "path": str(review_json), "test_domains": ["domain7"]})
    )
    tokenize_collection(tasks, tokenizer, 32, test_only=True)
    assert tasks.test_examples() and all(part.input_ids is not None for part in tasks.test_examples())
    assert all(task.input_ids is None for task in tasks.train + tasks.validation)


def test_collate_pads_to_the_longest_in_the_batch_never_to_max_length(tokenizer):
    ids = tokenize_texts(TEXTS[:3], tokenizer, max_length=256)
    batch = collate(ids, tokenizer.pad_token_id, np.array([1, 0, 1]))
    assert batch["input_ids"].shape == (3, 9)
    assert batch["attention_mask"].sum(dim=1).tolist() == [4, 9, 4]
    assert batch["input_ids"][0, 4:].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [1, 0, 1]
    assert "labels" not in collate(ids, tokenizer.pad_token_id)


def test_length_sorted_batches_cover_every_example_once(tokenizer):
    task = TaskExamples(name="t", domain="t", texts=TEXTS * 3, labels=np.arange(12) % 2)
    task.input_ids = tokenize_texts(task.texts, tokenizer, max_length=64)
    seen = []
    for idx, batch in length_sorted_batches(task, 5, tokenizer.pad_token_id):
        assert batch["input_ids"].shape[1] == max(len(task.input_ids[i]) for i in idx)
        assert batch["labels"].tolist() == task.labels[idx].tolist()
        seen += idx.tolist()
    assert sorted(seen) == list(range(12))
