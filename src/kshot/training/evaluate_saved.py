"""Scoring a saved model by the few-shot protocol on a config's test tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import KshotConfig
from ..errors import DataError
from ..models import load_tokenizer
from .evaluation import evaluate_tasks
from .saved import check_model_dir, saved_label_prior, saved_params
from .setup import build_algorithm, build_tasks, load_run_model, make_accelerator


def evaluate_model(
    model_dir: str | Path, config: KshotConfig, params_overrides: dict[str, Any] | None = None, accelerator=None
) -> dict[str, Any]:
    """The few-shot protocol on ``config``'s test tasks: per task adapt a fresh copy, score the query."""
    check_model_dir(model_dir)
    params = saved_params(model_dir, params_overrides)
    accelerator = accelerator or make_accelerator(params, training=False)
    tokenizer = load_tokenizer(str(model_dir))
    tasks = build_tasks(config, params, tokenizer, with_training=False)
    if not tasks.test:
        raise DataError("No test tasks: set data.test_domains (or use a format with default test domains).")
    model = load_run_model(
        str(model_dir),
        tasks.collection.label_names,
        params,
        new_classes=tasks.collection.new_classes,
        pooling=config.model.pooling,
    )
    algorithm = build_algorithm(model, params, accelerator, tokenizer)
    algorithm.load_pretrained(str(model_dir))
    prior = saved_label_prior(model_dir, params)
    return evaluate_tasks(
        algorithm,
        tasks.test,
        params.eval_inner_steps,
        params.eval_batch_size,
        params.seed,
        accelerator,
        label_prior=prior,
    )
