"""The few-shot protocol: every task adapts from the same meta-parameters; metrics are what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kshot.algorithms.reptile import Reptile
from kshot.config import Params
from kshot.data import FixedTask, TaskExamples, tokenize_texts
from kshot.models import load_model, load_tokenizer
from kshot.training import evaluate_tasks, format_table
from kshot.training.metrics import accuracy, macro_f1, summarize

from .. import synthetic


def test_accuracy_and_macro_f1_by_hand():
    y_true = np.array([1, 1, 1, 1, 0, 0])
    y_pred = np.array([1, 1, 1, 1, 1, 1])  # always the majority class
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    # F1(1) = 2·4/(2·4+2) = 0.8, F1(0) = 0 → macro 0.4
    assert macro_f1(y_true, y_pred, [0, 1]) == pytest.approx(0.4)
    assert macro_f1(y_true, y_true, [0, 1]) == 1.0
    y_pred = np.array([1, 0, 1, 1, 0, 1])
    f1_1, f1_0 = 2 * 3 / (2 * 3 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 1)
    assert macro_f1(y_true, y_pred, [0, 1]) == pytest.approx((f1_0 + f1_1) / 2)


def test_summarize_is_the_unweighted_mean_over_tasks():
    tasks = {
        "a": {"accuracy": 1.0, "macro_f1": 0.5, "n_query": 10},
        "b": {"accuracy": 0.5, "macro_f1": 0.25, "n_query": 1000},
    }
    out = summarize(tasks)
    assert {k: out[k] for k in ("accuracy", "macro_f1", "tasks")} == {"accuracy": 0.75, "macro_f1": 0.375, "tasks": 2}
    # The 95% confidence interval of the mean over tasks: 1.96 · sample std / sqrt(tasks).
    assert out["accuracy_ci95"] == pytest.approx(1.96 * np.std([1.0, 0.5], ddof=1) / np.sqrt(2))
    assert summarize({}) == {}


def make_task(name: str, domain: int, labels_names: list[str], tokenizer, n_support=8, n_query=30, seed=0) -> FixedTask:
    rows = synthetic.make_examples(domain, n_support + n_query, seed)
    ids = {n: i for i, n in enumerate(labels_names)}

    def examples(part):
        ex = TaskExamples(
            name=name, domain=name, texts=[r["text"] for r in part], labels=np.array([ids[r["label"]] for r in part])
        )
        ex.input_ids = tokenize_texts(ex.texts, tokenizer, 32)
        return ex

    return FixedTask(name=name, support=examples(rows[:n_support]), query=examples(rows[n_support:]))


@pytest.fixture()
def setup(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    params = Params.from_dict({"inner_lr": 1e-2, "inner_batch_size": 4, "seed": 0})
    torch.manual_seed(0)
    algo = Reptile(load_model(str(tiny_model_dir), ["negative", "positive"]), params, None, tokenizer.pad_token_id)
    tasks = [make_task(f"task{d}", d, ["negative", "positive"], tokenizer, seed=d) for d in range(3)]
    return algo, tasks, tokenizer


def test_each_task_adapts_from_the_meta_parameters(setup):
    algo, tasks, _ = setup
    theta = [p.detach().clone() for p in algo.model.parameters()]
    together = evaluate_tasks(algo, tasks, steps=4, batch_size=16, seed=0)
    alone = evaluate_tasks(algo, tasks[2:], steps=4, batch_size=16, seed=0)
    # the third task scores the same whether or not two others were adapted before it
    assert together["tasks"]["task2"] == alone["tasks"]["task2"]
    assert all(torch.equal(a, b) for a, b in zip(algo.model.parameters(), theta))
    assert list(together["tasks"]) == ["task0", "task1", "task2"]
    assert together["mean"] == summarize(together["tasks"])
    assert all(t["n_query"] == 30 for t in together["tasks"].values())


def test_adaptation_steps_change_the_result(setup):
    algo, tasks, _ = setup
    assert evaluate_tasks(algo, tasks, 0, 16, 0) != evaluate_tasks(algo, tasks, 8, 16, 0)


def test_predictions_are_restricted_to_the_tasks_classes(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    names = ["negative", "neutral", "positive"]
    torch.manual_seed(0)
    algo = Reptile(load_model(str(tiny_model_dir), names), Params.from_dict({"seed": 0}), None, tokenizer.pad_token_id)
    with torch.no_grad():
        algo.model.classifier.bias.copy_(torch.tensor([0.0, 100.0, 0.0]))  # 'neutral' would win everywhere
    algo.state.capture()
    task = make_task("two-way", 1, names, tokenizer)
    result = evaluate_tasks(algo, [task], steps=0, batch_size=16, seed=0)["tasks"]["two-way"]
    # predicted among negative/positive only, so at least one class is right for some examples
    assert result["accuracy"] > 0.0
    assert 0 <= result["n_positive_pred"] <= 30


def test_format_table_prints_percent_accuracy_and_f1(setup):
    results = {
        "tasks": {"books.t2": {"accuracy": 0.8125, "macro_f1": 0.75, "n_query": 16}},
        "mean": {"accuracy": 0.8125, "macro_f1": 0.75},
    }
    table = format_table(results, title="Test")
    assert table.splitlines()[0] == "Test"
    assert "books.t2" in table and "81.25" in table and "0.750" in table and "accuracy" in table and "macro-F1" in table
