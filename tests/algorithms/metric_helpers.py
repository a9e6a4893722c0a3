"""Shared set-up of the metric-based algorithm tests: a tiny BERT on the synthetic review family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kshot.config import KshotConfig, Params
from kshot.data import TaskExamples
from kshot.data.tokenization import tokenize_examples
from kshot.models import load_model, load_tokenizer
from kshot.training.evaluation import evaluate_tasks
from kshot.training.setup import build_algorithm, build_tasks


def run_config(tmp_path: Path, model_dir: Path, data: Path) -> KshotConfig:
    return KshotConfig.from_dict(
        {
            "data": {
                "format": "review_json",
                "path": str(data),
                "test_domains": ["domain6", "domain7"],
                "validation_domains": ["domain5"],
                "eval_episodes": 3,
                "cache_dir": str(tmp_path / "cache"),
            },
            "model": {"name_or_path": str(model_dir)},
            "output_dir": str(tmp_path / "out"),
            "logging": {"log_dir": str(tmp_path / "logs"), "progress_bar": False},
        }
    )


def run_params(algorithm: str, **overrides) -> Params:
    values = {
        "algorithm": algorithm,
        # float32: the in-memory reference runs without an accelerator, so it must match the folder's precision.
        "mixed_precision": "no",
        "meta_steps": 30,
        "meta_batch_size": 2,
        "k_support": 4,
        "k_query": 8,
        "metric_lr": 1e-3,
        "scorer_lr": 1e-3,
        "eval_every": 0,
        "eval_tasks": 2,
        "eval_inner_steps": 2,
        "checkpoint_every": 0,
        "max_length": 32,
        "seed": 0,
        "scorer_hidden": 32,
    }
    values.update(overrides)
    return Params.from_dict(values)


def build(tmp_path: Path, model_dir: Path, data: Path, algorithm: str, **overrides):
    """(algorithm object on CPU, run tasks, params) with the tiny model's fresh head seeded like the trainer."""
    config, params = run_config(tmp_path, model_dir, data), run_params(algorithm, **overrides)
    tokenizer = load_tokenizer(str(model_dir))
    tasks = build_tasks(config, params, tokenizer)
    torch.manual_seed(params.seed)
    model = load_model(str(model_dir), tasks.collection.label_names)
    return build_algorithm(model, params, None, tokenizer), tasks, params


def few_shot_accuracy(algorithm, tasks, params) -> float:
    return evaluate_tasks(algorithm, tasks.test, params.eval_inner_steps, params.eval_batch_size, params.seed)["mean"][
        "accuracy"
    ]


def meta_train(algorithm, tasks, params, steps: int | None = None) -> list[dict[str, float]]:
    steps = params.meta_steps if steps is None else steps
    return [algorithm.meta_step(tasks.sampler.meta_batch(s), s, params.meta_batch_size) for s in range(steps)]


def tokenized(texts: list[str], labels: list[int], model_dir: Path, max_length: int = 32) -> TaskExamples:
    task = TaskExamples(name="t", domain="d", texts=texts, labels=np.array(labels))
    return tokenize_examples(task, load_tokenizer(str(model_dir)), max_length)


def manual_embeddings(model, model_dir: Path, texts: list[str]) -> torch.Tensor:
    """Mean of the last-layer token states, one unpadded text at a time: the definition, by hand."""
    tokenizer = load_tokenizer(str(model_dir))
    model.eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            rows.append(model.base_model(input_ids=ids)[0][0].mean(dim=0))
    return torch.stack(rows)


def write_support_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


def assert_adapted_folder_predicts_like_memory(
    tmp_path: Path, model_dir: Path, data: Path, algorithm: str, **overrides
) -> None:
    """Meta-train briefly, `kshot adapt` to a folder, and check `kshot predict` on that folder gives
    the in-memory algorithm's predictions; the folder still loads with transformers."""
    from transformers import AutoModelForSequenceClassification, pipeline

    from kshot.algorithms.embedding import embed_task
    from kshot.algorithms.metric import SUPPORT_FILE
    from kshot.models import model_label_names
    from kshot.training import MetaTrainer, adapt_model, predict_texts
    from kshot.training.saved import saved_params

    from .. import synthetic

    config = run_config(tmp_path, model_dir, data)
    MetaTrainer(config, run_params(algorithm, meta_steps=10, test_after_train=False, **overrides)).train()
    trained, adapted = Path(config.output_dir), tmp_path / "adapted"
    pool = synthetic.make_examples(7, 40, seed=5)
    rows = [r for r in pool if r["label"] == "positive"][:6] + [r for r in pool if r["label"] == "negative"][:6]
    queries = [r["text"] for r in synthetic.make_examples(7, 20, seed=6)]
    adapt_model(trained, write_support_csv(tmp_path / "support.csv", rows), adapted)
    from_folder = predict_texts(adapted, queries)

    model = load_model(str(trained))
    params = saved_params(trained)
    memory = build_algorithm(model, params, None, load_tokenizer(str(trained)))
    memory.load_pretrained(str(trained))
    names = model_label_names(model)
    memory.adapt(
        tokenized([r["text"] for r in rows], [names.index(r["label"]) for r in rows], model_dir),
        params.eval_inner_steps,
        seed=params.seed,
    )
    probs = torch.softmax(
        torch.from_numpy(memory.predict(tokenized(queries, [0] * len(queries), model_dir), 64)), dim=-1
    ).numpy()

    # The support state is folded into the folder's own head: no side file, and transformers alone serves it.
    assert not (adapted / SUPPORT_FILE).exists()
    if algorithm == "protonet":  # its classifier is the prototype head exactly
        assert [p["label"] for p in from_folder] == [names[i] for i in probs.argmax(axis=1)]
        np.testing.assert_allclose([p["score"] for p in from_folder], probs.max(axis=1), rtol=1e-4, atol=1e-5)
    else:  # the others' folder holds the nearest-class-mean classifier of their embeddings
        classes, means = memory.prototypes
        emb = embed_task(memory.model, tokenized(queries, [0] * len(queries), model_dir), 64, 0, "cpu")
        nearest = classes[torch.cdist(emb, means).argmin(1)].tolist()
        assert [p["label"] for p in from_folder] == [names[i] for i in nearest]
    assert len({p["label"] for p in from_folder}) == 2, "a constant prediction would make the comparison vacuous"
    hf = AutoModelForSequenceClassification.from_pretrained(adapted)
    assert hf.config.num_labels == 2
    served = pipeline("text-classification", model=str(adapted), tokenizer=str(adapted))(queries)
    assert [s["label"] for s in served] == [p["label"] for p in from_folder]
    np.testing.assert_allclose([s["score"] for s in served], [p["score"] for p in from_folder], rtol=1e-4, atol=1e-5)
