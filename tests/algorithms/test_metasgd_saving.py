"""A saved metasgd model carries its learned inner learning rates, and `kshot evaluate` and
`kshot adapt` adapt with them."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from kshot.algorithms.metasgd import LR_FILE
from kshot.config import Params
from kshot.errors import ModelError
from kshot.training import MetaTrainer, adapt_model, evaluate_model

from .. import synthetic


@pytest.fixture()
def trained_metasgd(tiny_run):
    config, params = tiny_run
    params = Params.from_dict(
        {
            **params.to_dict(),
            "algorithm": "metasgd",
            "meta_steps": 3,
            "eval_every": 0,
            "checkpoint_every": 0,
            "test_after_train": False,
            "inner_optimizer": "sgd",
            "inner_lr": 0.05,
            "metasgd_lr_lr": 0.01,
        }
    )
    trainer = MetaTrainer(config, params)
    trainer.train()
    return config, params, trainer


@pytest.fixture()
def support_csv(tmp_path):
    path = tmp_path / "support.csv"
    rows = synthetic.make_examples(6, 8, seed=3)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_learned_rates_are_saved_beside_the_model(trained_metasgd):
    config, params, trainer = trained_metasgd
    saved = load_file(str(trainer.output_dir / LR_FILE))
    learned = {n: t.detach() for n, t in trainer.algorithm.lrs.items()}
    assert set(saved) == set(learned) == {n for n, _ in trainer.algorithm.model.named_parameters()}
    for n in saved:
        torch.testing.assert_close(saved[n], learned[n])
    moved = torch.cat([(t - params.inner_lr).abs().reshape(-1) for t in saved.values()])
    assert float(moved.max()) > 1e-3  # meta-training changed them (3 steps of Adam at 0.01)


def test_adapt_uses_the_saved_rates(trained_metasgd, support_csv, tmp_path):
    _, _, trainer = trained_metasgd
    model_dir = trainer.output_dir
    original = weights(model_dir)

    adapt_model(model_dir, support_csv, tmp_path / "adapted")
    adapted = weights(tmp_path / "adapted")
    assert any(not torch.equal(adapted[n], original[n]) for n in original)
    assert (tmp_path / "adapted" / LR_FILE).is_file()  # an adapted folder can be adapted again

    # Rates of zero except on the classifier: only the classifier may move.
    lrs = load_file(str(model_dir / LR_FILE))
    save_file(
        {n: t if n.startswith("classifier.") else torch.zeros_like(t) for n, t in lrs.items()}, str(model_dir / LR_FILE)
    )
    result = CliRunner().invoke(
        __import__("kshot.cli.main", fromlist=["app"]).app,
        ["adapt", "--model", str(model_dir), "--support", str(support_csv), "--out", str(tmp_path / "head_only")],
    )
    assert result.exit_code == 0, result.output
    head_only = weights(tmp_path / "head_only")
    for n in original:
        if n.startswith("classifier."):
            assert not torch.equal(head_only[n], original[n]), n
        else:
            torch.testing.assert_close(head_only[n], original[n], rtol=0, atol=0)


def _adapted_logits(model_dir, task):
    """What `kshot evaluate` does per task: load the folder as evaluate_model does, adapt, predict."""
    from kshot.models import load_model, load_tokenizer
    from kshot.training.saved import saved_params
    from kshot.training.setup import build_algorithm

    params = saved_params(model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    algorithm = build_algorithm(load_model(str(model_dir)), params, None, tokenizer)
    algorithm.load_pretrained(str(model_dir))
    before = algorithm.predict(task.query, 64)
    algorithm.adapt(task.support, params.eval_inner_steps, seed=0)
    return before, algorithm.predict(task.query, 64)


def test_evaluate_uses_the_saved_rates(trained_metasgd):
    config, _, trainer = trained_metasgd
    model_dir = trainer.output_dir
    task = trainer.tasks.test[0]
    before, learned = _adapted_logits(model_dir, task)
    assert not torch.allclose(torch.as_tensor(before), torch.as_tensor(learned))
    unadapted = evaluate_model(model_dir, config, {"eval_inner_steps": 0})

    lrs = load_file(str(model_dir / LR_FILE))
    save_file({n: torch.zeros_like(t) for n, t in lrs.items()}, str(model_dir / LR_FILE))
    before_zero, zero_rates = _adapted_logits(model_dir, task)
    torch.testing.assert_close(torch.as_tensor(zero_rates), torch.as_tensor(before_zero), rtol=0, atol=0)
    assert evaluate_model(model_dir, config)["tasks"] == unadapted["tasks"]


def test_a_metasgd_model_without_its_rates_is_refused(trained_metasgd):
    config, _, trainer = trained_metasgd
    (trainer.output_dir / LR_FILE).unlink()
    with pytest.raises(ModelError, match=LR_FILE):
        evaluate_model(trainer.output_dir, config)
