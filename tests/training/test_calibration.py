import json
import zlib

import numpy as np
import pytest
import torch

from kshot.data import TaskExamples
from kshot.training import MetaTrainer, adapt_model
from kshot.training.calibration import label_prior, prior_shift
from kshot.training.evaluation import evaluate_task


def _task(name, labels):
    return TaskExamples(name=name, domain=name, texts=[f"t{i}" for i in range(len(labels))], labels=np.array(labels))


def test_label_prior_weighs_every_task_once():
    tasks = [_task("a", [1] * 8 + [0] * 2), _task("b", [1] * 40 + [0] * 60)]
    assert np.allclose(label_prior(tasks, 2), [0.4, 0.6])


def test_prior_shift_moves_a_balanced_support_to_the_prior():
    shift = prior_shift(np.array([0.25, 0.75]), np.array([0] * 5 + [1] * 5), np.array([0, 1]))
    assert shift[1] - shift[0] == pytest.approx(np.log(3.0))


def test_calibrated_evaluation_is_argmax_of_shifted_logits(tiny_run):
    config, params = tiny_run
    params.meta_steps, params.eval_every, params.test_after_train = 1, 0, False
    trainer = MetaTrainer(config, params)
    trainer.train()
    task = trainer.tasks.test[0]
    algo, prior = trainer.algorithm, np.array([0.1, 0.9])
    plain = evaluate_task(algo, task, params.eval_inner_steps, 16, params.seed)
    calibrated = evaluate_task(algo, task, params.eval_inner_steps, 16, params.seed, prior)
    # The same adaptation (evaluate_task seeds it from the task name), then predictions from logits + shift,
    # computed here by hand.
    algo.adapt(task.support, params.eval_inner_steps, seed=zlib.crc32(task.name.encode()) ^ params.seed)
    logits = algo.predict(task.query, 16)
    algo.reset()
    shifted = logits + prior_shift(prior, task.support.labels, np.array([0, 1]))
    expected = float(np.mean(np.argmax(shifted, axis=1) == task.query.labels))
    assert calibrated["accuracy"] == pytest.approx(expected)
    assert calibrated["n_positive_pred"] >= plain["n_positive_pred"]


def test_adapt_folds_the_prior_into_the_saved_head(tmp_path, tiny_run):
    config, params = tiny_run
    params.meta_steps, params.eval_every, params.test_after_train = 1, 0, False
    params.prior_calibration = True
    MetaTrainer(config, params).train()
    model_dir = config.output_dir
    meta = json.loads((tmp_path / "out" / "kshot.json").read_text())
    assert len(meta["label_prior"]) == 2 and sum(meta["label_prior"]) == pytest.approx(1.0)
    support = tmp_path / "support.jsonl"
    support.write_text(
        "".join(
            json.dumps({"text": t, "label": lab}) + "\n"
            for t, lab in [("good great", "positive"), ("bad awful", "negative")] * 3
        )
    )
    adapt_model(model_dir, support, tmp_path / "cal")
    adapt_model(model_dir, support, tmp_path / "raw", params_overrides={"prior_calibration": False})
    from transformers import AutoModelForSequenceClassification

    cal = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cal").classifier.bias
    raw = AutoModelForSequenceClassification.from_pretrained(tmp_path / "raw").classifier.bias
    shift = prior_shift(np.array(meta["label_prior"]), np.array([1, 0] * 3), np.array([0, 1]))
    assert torch.allclose(cal - raw, torch.tensor(shift, dtype=cal.dtype), atol=1e-6)
