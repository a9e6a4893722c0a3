"""Integration on the real ARSC files and the real default model (slow: run with ``-m slow``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kshot.config import DataConfig, KshotConfig, Params
from kshot.data import FixedTask, load_tasks
from kshot.training import MetaTrainer, evaluate_tasks

from ..conftest import ARSC_DIR, arsc_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not arsc_available(), reason=f"ARSC data not found at {ARSC_DIR}"),
]

TARGETS = ["books", "dvd", "electronics", "kitchen_housewares"]


def test_arsc_loader_counts():
    tasks = load_tasks(DataConfig.from_dict({"format": "arsc", "path": str(ARSC_DIR)}))
    train_domains = {t.domain for t in tasks.train}
    assert len(train_domains) == 17 and len(tasks.train) == 17 * 3
    assert not train_domains & set(TARGETS)
    assert [t.name for t in tasks.test] == [f"{d}.{t}" for d in TARGETS for t in ("t2", "t4", "t5")]
    for task in tasks.test:
        assert len(task.support) == 10 and np.bincount(task.support.labels).tolist() == [5, 5]
        assert 600 <= len(task.query) <= 900
        assert task.support.domain == task.query.domain and task.support.domain in TARGETS
    assert tasks.validation_is_default and {t.domain for t in tasks.validation} == train_domains


def test_reptile_on_arsc_with_the_default_model(tmp_path, all_torch_threads):
    config = KshotConfig.from_dict(
        {
            # two training domains and one validation domain: the whole pipeline, a fraction of the tokenizing
            "data": {
                "format": "arsc",
                "path": str(ARSC_DIR),
                "train_domains": ["apparel", "baby"],
                "validation_domains": ["beauty"],
                "cache_dir": str(tmp_path / "cache"),
                "eval_query_size": 20,
            },
            "model": {"name_or_path": None},
            "output_dir": str(tmp_path / "out"),
            "logging": {"progress_bar": False},
        }
    )
    params = Params.from_dict(
        {
            "meta_steps": 2,
            "meta_batch_size": 2,
            "k_support": 2,
            "k_query": 4,
            "inner_steps": 2,
            "inner_batch_size": 4,
            "eval_every": 0,
            "eval_tasks": 1,
            "eval_inner_steps": 2,
            "max_length": 64,
            "test_after_train": False,
            "seed": 0,
        }
    )
    trainer = MetaTrainer(config, params)
    result = trainer.train()
    assert result.steps == 2 and result.best_step == 2
    assert len(result.validation) == 1 and math.isfinite(result.best_metric)
    assert len(trainer.tasks.test) == 12

    # the official support sets of two target tasks; the first 100 query examples keep it quick
    targets = [FixedTask(t.name, t.support, t.query.subset(np.arange(100))) for t in trainer.tasks.test[:2]]
    results = evaluate_tasks(trainer.algorithm, targets, params.eval_inner_steps, 64, params.seed)
    assert list(results["tasks"]) == ["books.t2", "books.t4"]
    for task in results["tasks"].values():
        assert 0.0 <= task["accuracy"] <= 1.0 and 0.0 <= task["macro_f1"] <= 1.0 and task["n_query"] == 100
    assert (tmp_path / "out" / "kshot.json").exists() and (tmp_path / "out" / "model.safetensors").exists()


def test_adapt_the_default_model_on_an_arsc_support_set(tmp_path, all_torch_threads):
    from transformers import pipeline

    from kshot.models import resolve_model_name
    from kshot.training import adapt_model

    lines = (ARSC_DIR / "books.t2.train").read_text().splitlines()
    rows = [line.rsplit("\t", 1) for line in lines if line.strip()]
    support = tmp_path / "support.jsonl"
    import json

    support.write_text(
        "".join(json.dumps({"text": t, "label": "good" if lab == "1" else "bad"}) + "\n" for t, lab in rows)
    )
    info = adapt_model(
        resolve_model_name(None), support, tmp_path / "adapted", steps=3, params_overrides={"max_length": 64}
    )
    assert info["labels"] == ["bad", "good"]
    clf = pipeline("text-classification", model=str(tmp_path / "adapted"), device="cpu")
    queries = [line.rsplit("\t", 1)[0] for line in (ARSC_DIR / "books.t2.test").read_text().splitlines()[:8]]
    assert {p["label"] for p in clf(queries, truncation=True)} <= {"bad", "good"}


def test_anil_meta_training_beats_the_untrained_init_on_held_out_domains(tmp_path, all_torch_threads):
    # The recipe of configs/arsc/anil.yaml, shortened: 3 training domains, 2 held-out ones scored on
    # 5 + 5 supports drawn from their train files and the first 120 queries of their test files.
    config = KshotConfig.from_dict(
        {
            "data": {
                "format": "arsc",
                "path": str(ARSC_DIR),
                "train_domains": ["apparel", "baby", "toys_games"],
                "test_domains": ["camera_photo", "sports_outdoors"],
                "cache_dir": str(tmp_path / "cache"),
            },
            "model": {"name_or_path": None},
            "output_dir": str(tmp_path / "out"),
            "logging": {"progress_bar": False},
        }
    )
    params = Params.from_dict(
        {
            "algorithm": "anil",
            "meta_steps": 160,
            "meta_batch_size": 1,
            "k_support": 5,
            "k_query": 20,
            "inner_steps": 10,
            "inner_lr": 1e-3,
            "inner_optimizer": "adam",
            "meta_lr": 1e-4,
            "eval_every": 0,
            "eval_inner_steps": 10,
            "max_length": 64,
            "freeze_embeddings": True,
            "test_after_train": False,
            "seed": 0,
        }
    )
    from kshot.models import load_model, load_tokenizer, resolve_model_name
    from kshot.training.setup import build_algorithm, build_tasks

    name = resolve_model_name(None)
    tokenizer = load_tokenizer(name)
    run = build_tasks(config, params, tokenizer, with_training=False)
    tasks = [FixedTask(t.name, t.support, t.query.subset(np.arange(min(120, len(t.query))))) for t in run.test]
    untrained = build_algorithm(load_model(name, run.collection.label_names), params, None, tokenizer)
    before = evaluate_tasks(untrained, tasks, 10, 64, 0)["mean"]
    trainer = MetaTrainer(config, params)
    trainer.train()
    after = evaluate_tasks(trainer.algorithm, tasks, 10, 64, 0)["mean"]
    assert after["macro_f1"] > before["macro_f1"] + 0.1, (before, after)
    assert after["accuracy"] > 0.75
