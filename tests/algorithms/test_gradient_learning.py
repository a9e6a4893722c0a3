"""Short runs on the synthetic task family: every gradient-based algorithm and baseline beats the
untrained initialisation by a margin, through the real trainer and evaluation."""

from __future__ import annotations

import pytest
import torch

from kshot.config import KshotConfig, Params
from kshot.models import load_model, load_tokenizer
from kshot.training import MetaTrainer
from kshot.training.evaluation import evaluate_tasks
from kshot.training.setup import build_algorithm, build_tasks

MARGIN = 0.25  # accuracy and macro-F1, absolute; the untrained init scores about 0.5 / 0.34


def run_config(tiny_run, **overrides) -> tuple[KshotConfig, Params]:
    config, params = tiny_run
    config = KshotConfig.from_dict({**config.to_dict(), "data": {**config.data.to_dict(), "eval_episodes": 4}})
    base = {
        "meta_batch_size": 4,
        "inner_steps": 3,
        "inner_lr": 1e-3,
        "meta_lr": 1e-3,
        "eval_every": 0,
        "eval_inner_steps": 5,
        "checkpoint_every": 0,
        "outer_lr_schedule": "constant",
    }
    return config, Params.from_dict({**params.to_dict(), **base, **overrides})


def untrained_score(config: KshotConfig, params: Params) -> dict[str, float]:
    """The same adaptation and test tasks, from the initial weights."""
    tokenizer = load_tokenizer(config.model.name_or_path)
    tasks = build_tasks(config, params, tokenizer, with_training=False)
    torch.manual_seed(params.seed)
    algorithm = build_algorithm(
        load_model(config.model.name_or_path, tasks.collection.label_names), params, None, tokenizer
    )
    return evaluate_tasks(algorithm, tasks.test, params.eval_inner_steps, params.eval_batch_size, params.seed)["mean"]


# Steps to leave the random init's plateau, with room: anil's inner loop adapts only the head.
STEPS = {"maml": 60, "fomaml": 40, "metasgd": 60, "anil": 60, "transfer": 40}


@pytest.mark.parametrize("algorithm", list(STEPS))
def test_meta_training_beats_the_untrained_init(tiny_run, algorithm):
    config, params = run_config(tiny_run, algorithm=algorithm, meta_steps=STEPS[algorithm])
    before = untrained_score(config, params)
    after = MetaTrainer(config, params).train().test["mean"]
    assert after["accuracy"] >= before["accuracy"] + MARGIN, (before, after)
    assert after["macro_f1"] >= before["macro_f1"] + MARGIN, (before, after)


def test_finetune_runs_through_the_trainer_and_adaptation_beats_none(tiny_run):
    """finetune: meta_steps=1 of nothing, then the test tasks are adapted from the initial weights."""
    config, params = run_config(tiny_run, algorithm="finetune", meta_steps=1, eval_inner_steps=30, inner_lr=3e-3)
    trainer = MetaTrainer(config, params)
    initial = [p.detach().clone() for p in load_model(config.model.name_or_path).parameters()]
    result = trainer.train()
    saved = load_model(result.output_dir).parameters()
    assert all(torch.equal(a, b) for a, b in zip(initial, saved))  # the saved model is the pretrained one
    no_adaptation = untrained_score(config, Params.from_dict({**params.to_dict(), "eval_inner_steps": 0}))
    after = result.test["mean"]
    assert after["accuracy"] >= no_adaptation["accuracy"] + 0.1, (no_adaptation, after)
    assert after["macro_f1"] >= no_adaptation["macro_f1"] + 0.1, (no_adaptation, after)
