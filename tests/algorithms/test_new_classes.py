"""Every algorithm on new classes: per-episode heads, adaptation to labels never seen, and saved folders
that `transformers.pipeline` serves exactly as `kshot predict` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kshot.algorithms import available
from kshot.algorithms.heads import class_means, episode_head

from .. import synthetic

ALGORITHMS = available()


# ------------------------------------------------------------------------------------------- head rules
def test_head_rules_from_one_row():
    torch.manual_seed(0)
    row, bias = torch.randn(1, 4, requires_grad=True), torch.randn(1, requires_grad=True)
    features, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    w, b = episode_head("zero", row, bias, 3)
    assert torch.equal(w, torch.zeros(3, 4)) and torch.equal(b, torch.zeros(3))
    w, b = episode_head("unicorn", row, bias, 3)
    assert torch.equal(w, row.expand(3, 4)) and torch.equal(b, bias.expand(3))
    # Unicorn-MAML: the row's gradient is the sum of the rows' gradients.
    upstream = torch.randn(3, 4)
    (w * upstream).sum().backward()
    assert torch.allclose(row.grad, upstream.sum(0, keepdim=True))
    w, b = episode_head("prototypes", row, bias, 3, features, labels, scale=2.0)
    logits = features @ w.T + b
    distance = torch.cdist(features, class_means(features, labels, 3)).pow(2)
    # Minus scale × squared distance, up to a term common to every class (the shared row and ‖x‖²).
    gap = logits + 2.0 * distance
    assert torch.allclose(gap - gap[:, :1], torch.zeros_like(gap), atol=1e-4)


# ------------------------------------------------------------------------- every algorithm, end to end
@pytest.fixture(scope="module")
def intent_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("intent")
    data = synthetic.write_class_splits(root / "split")
    model = synthetic.build_tiny_model(root / "model", words=synthetic.intent_vocabulary())
    return root, data, model


def train_config(root: Path, data: Path, model: Path, algorithm: str):
    from kshot.config import KshotConfig, Params

    config = KshotConfig.from_dict(
        {
            "data": {
                "format": "class_splits",
                "path": str(data),
                "eval_way": 3,
                "eval_shots": 2,
                "eval_queries": 2,
                "eval_episodes": 3,
                "cache_dir": str(root / "cache"),
            },
            "model": {"name_or_path": str(model)},
            "output_dir": str(root / algorithm),
            "logging": {"log_dir": str(root / "logs"), "progress_bar": False},
        }
    )
    params = Params.from_dict(
        {
            "algorithm": algorithm,
            "n_way": 3,
            "k_support": 2,
            "k_query": 2,
            "query_sampling": "per_class",
            "meta_steps": 1 if algorithm == "finetune" else 2,
            "eval_every": 0,
            "inner_steps": 2,
            "eval_inner_steps": 2,
            "inner_lr": 1e-2,
            "inner_batch_size": 6,
            "mixed_precision": "no",
        }
    )
    return config, params


@pytest.mark.parametrize("names", [False, True], ids=["plain", "names"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_trains_adapts_and_serves_new_classes(tmp_path, intent_setup, algorithm, names):
    """``names``: each class's name is one more support example (label_names_as_support), in training,
    evaluation and adaptation, for every algorithm."""
    from transformers import pipeline

    from kshot.training import MetaTrainer, adapt_model, predict_texts

    root, data, model = intent_setup
    config, params = train_config(tmp_path, data, model, algorithm)
    params.label_names_as_support = names
    result = MetaTrainer(config, params).train()
    # Test episodes: 3-way over test classes only, scored with the task's own 3 columns.
    test = result.test
    assert test["mean"]["tasks"] == 3 and 0.0 <= test["mean"]["accuracy"] <= 1.0
    assert np.isfinite(test["mean"]["accuracy_ci95"])

    # A user's CSV with labels no step ever saw (the test classes' texts under their own names).
    rows = []
    for c, name in ((10, "card_arrival"), (11, "top_up"), (12, "refund")):
        for i in range(2):
            rows.append({"text": " ".join(synthetic.intent_words(c)[i : i + 2] + ["the", "it"]), "label": name})
    support = synthetic.write_table(tmp_path / "support.csv", rows)
    out = tmp_path / "adapted"
    info = adapt_model(config.output_dir, support, out, steps=2)
    assert info["labels"] == ["card_arrival", "refund", "top_up"]

    queries = [" ".join(["a", w, "very"]) for c in (10, 11, 12) for w in synthetic.intent_words(c)]
    ours = predict_texts(out, queries)
    served = pipeline("text-classification", model=str(out), tokenizer=str(out))(queries)
    assert [s["label"] for s in served] == [p["label"] for p in ours]
    np.testing.assert_allclose([s["score"] for s in served], [p["score"] for p in ours], rtol=1e-4, atol=1e-5)
    assert {p["label"] for p in ours} <= {"card_arrival", "refund", "top_up"}


# ------------------------------------------------------------------- the real model, zero steps
@pytest.mark.parametrize("steps", [0, 10])
def test_adapting_the_default_model_to_new_intents_starts_from_prototypes(tmp_path, steps):
    """12 examples of 4 intents the model never saw: the head starts from their prototypes, so with zero
    steps it already classifies its own support examples, and the saved folder serves the same."""
    from transformers import pipeline

    from kshot.models import default_model_path
    from kshot.training import adapt_model, predict_texts

    rows = [
        {"text": t, "label": label}
        for label, texts in {
            "card_arrival": ["When will my new card arrive?", "My card still hasn't come", "card delivery time"],
            "top_up_failed": ["My top-up failed", "Why did topping up not work?", "top up declined"],
            "exchange_rate": [
                "What exchange rate do you use?",
                "rate for euros to dollars",
                "currency conversion rate",
            ],
            "lost_phone": ["I lost my phone", "my phone was stolen, block the app", "phone missing what do I do"],
        }.items()
        for t in texts
    ]
    support = synthetic.write_table(tmp_path / "support.csv", rows)
    out = tmp_path / "adapted"
    adapt_model(default_model_path(), support, out, steps=steps)
    texts = [r["text"] for r in rows]
    ours = predict_texts(out, texts)
    assert [p["label"] for p in ours] == [r["label"] for r in rows]
    served = pipeline("text-classification", model=str(out), tokenizer=str(out))(texts)
    assert [s["label"] for s in served] == [r["label"] for r in rows]
    np.testing.assert_allclose([s["score"] for s in served], [p["score"] for p in ours], rtol=1e-4, atol=1e-5)


def test_adapting_with_class_names_folds_them_into_the_served_head(tmp_path):
    """label_names_as_support: one example an intent, one of them vague; the names fill in what the
    examples do not say. With zero steps the saved head classifies the names and the examples, and
    `pipeline` serves what `kshot predict` gives."""
    from transformers import pipeline

    from kshot.models import default_model_path
    from kshot.training import adapt_model, predict_texts

    rows = [
        {"text": "When will my new card arrive?", "label": "card_arrival"},
        {"text": "My top-up failed", "label": "top_up_failed"},
        {"text": "What exchange rate do you use?", "label": "exchange_rate"},
        {"text": "Can you help me with something?", "label": "lost_phone"},
    ]
    support = synthetic.write_table(tmp_path / "support.csv", rows)
    texts = [r["text"] for r in rows] + ["card arrival", "top up failed", "exchange rate", "lost phone"]
    labels = [r["label"] for r in rows] * 2
    confidence = {}
    for names in (False, True):
        out = tmp_path / f"adapted-{names}"
        adapt_model(default_model_path(), support, out, steps=0, params_overrides={"label_names_as_support": names})
        every = pipeline("text-classification", model=str(out), tokenizer=str(out), top_k=None)(texts)
        confidence[names] = [{s["label"]: s["score"] for s in scores}[label] for scores, label in zip(every, labels)]
    # The names sit in the head: the vague example's class is sure of its name only with it (0.48 -> 1.00).
    assert confidence[True][-1] > confidence[False][-1] + 0.3
    ours = predict_texts(out, texts)
    assert [p["label"] for p in ours] == labels
    served = pipeline("text-classification", model=str(out), tokenizer=str(out))(texts)
    assert [s["label"] for s in served] == labels
    np.testing.assert_allclose([s["score"] for s in served], [p["score"] for p in ours], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------- evaluation encodes a text once
@pytest.mark.parametrize("algorithm", ["protonet", "anil"])
def test_evaluation_encodes_each_text_once_and_scores_as_without_the_cache(tmp_path, intent_setup, algorithm):
    from kshot.models import load_tokenizer
    from kshot.training import evaluate_tasks
    from kshot.training.setup import build_algorithm, build_tasks, load_run_model, make_accelerator

    root, data, model_dir = intent_setup
    config, params = train_config(tmp_path, data, model_dir, algorithm)
    config.data.eval_episodes = 12  # 12 overlapping 3-way episodes over 5 test classes
    # Without dropout: anil adapts on the body's train-mode features, the cache holds eval-mode ones.
    params = type(params).from_dict({**params.to_dict(), "dropout": 0.0})
    tokenizer = load_tokenizer(str(model_dir))
    tasks = build_tasks(config, params, tokenizer, with_training=False).test
    model = load_run_model(str(model_dir), [], params, new_classes=True)
    algo = build_algorithm(model, params, make_accelerator(params, training=False), tokenizer)
    rows = []
    model.base_model.embeddings.register_forward_hook(lambda _m, _a, out: rows.append(out.shape[0]))
    cached = evaluate_tasks(algo, tasks, params.eval_inner_steps, 64, params.seed)
    distinct = len({t for task in tasks for part in (task.support, task.query) for t in part.texts})
    total = sum(len(task.support) + len(task.query) for task in tasks)
    assert sum(rows) == distinct < total
    # The same scores as encoding every episode's texts again.
    algo.caches_features = lambda: False
    rows.clear()
    plain = evaluate_tasks(algo, tasks, params.eval_inner_steps, 64, params.seed)
    assert sum(rows) >= total
    for name, m in cached["tasks"].items():
        assert m["accuracy"] == pytest.approx(plain["tasks"][name]["accuracy"])


@pytest.mark.parametrize("algorithm", ["anil", "reptile"])
def test_kshot_evaluate_scores_a_saved_new_class_model_on_the_test_protocol(tmp_path, intent_setup, algorithm):
    """`kshot evaluate` on new classes: the saved one-row model, all-way episodes of the test classes."""
    from kshot.config import KshotConfig
    from kshot.training import MetaTrainer, evaluate_model

    root, data, model = intent_setup
    config, params = train_config(tmp_path, data, model, algorithm)
    trained = MetaTrainer(config, params).train()
    all_way = KshotConfig.from_dict({**config.to_dict(), "data": {**config.data.to_dict(), "eval_way": "all"}})
    results = evaluate_model(config.output_dir, all_way)
    assert results["mean"]["tasks"] == 3
    assert all(m["n_query"] == 5 * 2 for m in results["tasks"].values())  # 5 test classes × 2 queries
    # The 3-way protocol of training reproduces the trainer's own test scores.
    again = evaluate_model(config.output_dir, config)
    assert again["mean"]["accuracy"] == pytest.approx(trained.test["mean"]["accuracy"])
