"""The learned_optimizer algorithm end to end: meta-training with MetaTrainer, the saved optimizer used
by evaluate and adapt, applied to a wider model of the same family, and the non-finite step guard."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from kshot.algorithms.learned_optimizer import LearnedOptimizer, load_lopt
from kshot.config import KshotConfig, Params
from kshot.errors import ConfigError, ModelError
from kshot.models import load_model, load_tokenizer
from kshot.training import MetaTrainer, adapt_model, evaluate_model
from kshot.training.setup import build_algorithm, build_tasks

from .. import synthetic

PARAMS = {
    "algorithm": "learned_optimizer",
    "meta_steps": 3,
    "meta_batch_size": 2,
    "k_support": 4,
    "k_query": 8,
    "inner_steps": 3,
    "inner_batch_size": 8,
    "inner_optimizer": "sgd",
    "inner_lr": 0.1,
    "meta_lr": 1e-3,
    "lopt_lr": 1e-2,
    "lopt_max_step": 0.1,
    "lopt_checkpoint_segment": 2,
    "eval_every": 3,
    "eval_tasks": 2,
    "eval_inner_steps": 3,
    "checkpoint_every": 0,
    "max_length": 32,
    "seed": 0,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("lopt")
    review = synthetic.write_review_json(root / "dataset.json")
    config = KshotConfig.from_dict(
        {
            "data": {
                "format": "review_json",
                "path": str(review),
                "test_domains": ["domain6", "domain7"],
                "validation_domains": ["domain5"],
                "cache_dir": str(root / "cache"),
            },
            "model": {"name_or_path": str(tiny_model_dir)},
            "output_dir": str(root / "out"),
            "logging": {"log_dir": str(root / "logs"), "progress_bar": False},
        }
    )
    params = Params.from_dict(PARAMS)
    result = MetaTrainer(config, params).train()
    return config, params, result, root


def wider_model(out_dir, hidden: int = 48):
    """Another tiny BERT of the same family: same vocabulary and layer names, another width."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(synthetic.vocabulary()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(synthetic.vocabulary()),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    torch.manual_seed(1)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def same_weights(a: LearnedOptimizer, b: LearnedOptimizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_meta_training_saves_the_learned_optimizer_beside_the_model(run):
    _, params, result, _ = run
    out = result.output_dir
    meta = json.loads((synthetic.Path(out) / "kshot.json").read_text())
    assert meta["algorithm"] == "learned_optimizer"
    saved = load_lopt(out)
    fresh = LearnedOptimizer(saved.config, saved.scale_names)
    assert saved.config.kind == "mlp" and saved.config.hidden == params.lopt_hidden
    assert not same_weights(saved, fresh)  # meta-training changed the rule
    assert "bert.embeddings.word_embeddings.weight" in saved.scale_names
    assert result.test is not None


def test_evaluate_and_adapt_use_the_saved_optimizer(run, tmp_path):
    config, params, result, _ = run
    out = result.output_dir
    tokenizer = load_tokenizer(out)
    algorithm = build_algorithm(load_model(out), params, None, tokenizer)
    algorithm.load_pretrained(out)
    assert same_weights(algorithm.lopt, load_lopt(out))
    # `kshot evaluate` runs the same protocol as the trainer's own test pass.
    assert evaluate_model(out, config) == result.test
    support = tmp_path / "support.jsonl"
    rows = synthetic.make_examples(9, 8, seed=3)
    support.write_text("\n".join(json.dumps({"text": r["text"], "label": r["label"]}) for r in rows) + "\n")
    info = adapt_model(out, support, tmp_path / "adapted")
    assert info["steps"] == params.eval_inner_steps
    assert same_weights(load_lopt(tmp_path / "adapted"), algorithm.lopt)  # travels with the adapted model
    before, after = load_model(out), load_model(tmp_path / "adapted")
    assert not torch.equal(before.classifier.weight, after.classifier.weight)


def test_applies_to_a_wider_model_of_the_same_family(run, tmp_path):
    config, params, result, _ = run
    other = wider_model(tmp_path / "wide")
    overrides = {**params.to_dict(), "lopt_path": result.output_dir}
    results = evaluate_model(other, config, params_overrides=overrides)
    assert set(results["tasks"]) == set(result.test["tasks"])

    tokenizer = load_tokenizer(other)
    tasks = build_tasks(config, Params.from_dict(overrides), tokenizer, with_training=False)
    algorithm = build_algorithm(load_model(other), Params.from_dict(overrides), None, tokenizer)
    algorithm.load_pretrained(str(other))
    saved = load_lopt(result.output_dir)
    assert algorithm.lopt.state_dict()["out.weight"].equal(saved.state_dict()["out.weight"])
    # Per-tensor scales follow the parameter names, which the two widths share.
    name = "bert.encoder.layer.1.output.dense.weight"
    assert torch.equal(
        algorithm.lopt.log_scale.detach()[algorithm.lopt.scale_names.index(name)],
        saved.log_scale.detach()[saved.scale_names.index(name)],
    )
    assert algorithm.meta["bert.embeddings.word_embeddings.weight"].shape[1] == 48
    task = tasks.test[0]
    losses = algorithm.adapt(task.support, 6, seed=0)
    assert np.isfinite(losses["loss"])
    trained = algorithm.adapted
    assert any(not torch.equal(trained[n], algorithm.meta[n]) for n in trained)


def test_a_model_trained_with_it_but_missing_the_files_is_an_error(run, tmp_path):
    _, params, result, _ = run
    broken = tmp_path / "broken"
    shutil.copytree(result.output_dir, broken, ignore=shutil.ignore_patterns("learned_optimizer.*", "checkpoint"))
    algorithm = build_algorithm(load_model(broken), params, None, load_tokenizer(broken))
    with pytest.raises(ModelError, match="learned_optimizer.safetensors"):
        algorithm.load_pretrained(str(broken))


def test_non_finite_meta_gradient_skips_the_step_with_a_warning(run, caplog):
    config, params, result, _ = run
    tokenizer = load_tokenizer(result.output_dir)
    tasks = build_tasks(config, params, tokenizer)
    algorithm = build_algorithm(load_model(result.output_dir), params, None, tokenizer)
    episodes = tasks.sampler.meta_batch(0)
    with torch.no_grad():
        algorithm.lopt.out.bias.fill_(float("nan"))  # every update, and so the meta-gradient, is NaN
    before_init = {n: t.detach().clone() for n, t in algorithm.meta.items()}
    before_lopt = {n: t.detach().clone() for n, t in algorithm.lopt.named_parameters()}
    with caplog.at_level(logging.WARNING, logger="kshot.algorithms.learned_optimizer.algorithm"):
        metrics = algorithm.meta_step(episodes, 0, len(episodes))
    assert metrics["skipped"] == 1.0
    assert "non-finite meta-gradient" in caplog.text
    assert all(torch.equal(t, before_init[n]) for n, t in algorithm.meta.items())
    assert all(
        torch.allclose(t, before_lopt[n], rtol=0, atol=0, equal_nan=True) for n, t in algorithm.lopt.named_parameters()
    )
    # A healthy step afterwards is applied.
    with torch.no_grad():
        algorithm.lopt.out.bias.zero_()
    assert algorithm.meta_step(episodes, 1, len(episodes))["skipped"] == 0.0
    assert any(not torch.equal(t, before_init[n]) for n, t in algorithm.meta.items())


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_restored_state_continues_exactly(run, kind):
    """A checkpoint's state (θ, the learned optimizer, both outer optimizers) resumes bit for bit."""
    config, params, result, _ = run
    params = Params.from_dict({**PARAMS, "lopt_kind": kind, "lopt_hidden": 4})
    tokenizer = load_tokenizer(result.output_dir)
    tasks = build_tasks(config, params, tokenizer)

    def fresh():
        torch.manual_seed(0)
        return build_algorithm(load_model(str(synthetic.Path(config.model.name_or_path))), params, None, tokenizer)

    first = fresh()
    first.meta_step(tasks.sampler.meta_batch(0), 0, params.meta_batch_size)
    state = first.state_dict()
    second = fresh()
    second.load_state_dict(state)
    a = first.meta_step(tasks.sampler.meta_batch(1), 1, params.meta_batch_size)
    b = second.meta_step(tasks.sampler.meta_batch(1), 1, params.meta_batch_size)
    assert a == b and a["skipped"] == 0.0
    assert all(torch.equal(first.meta[n], second.meta[n]) for n in first.meta)
    assert same_weights(first.lopt, second.lopt)
    assert not same_weights(first.lopt, LearnedOptimizer(first.lopt.config, first.lopt.scale_names))


def test_gradient_checkpointing_of_the_backbone_changes_nothing_but_memory(run):
    config, _, result, _ = run
    tokenizer = load_tokenizer(result.output_dir)
    outcomes = []
    for flag in (False, True):
        params = Params.from_dict({**PARAMS, "gradient_checkpointing": flag, "lopt_checkpoint_segment": 0})
        tasks = build_tasks(config, params, tokenizer)
        torch.manual_seed(0)
        algorithm = build_algorithm(load_model(config.model.name_or_path), params, None, tokenizer)
        metrics = algorithm.meta_step(tasks.sampler.meta_batch(0), 0, params.meta_batch_size)
        outcomes.append(
            (metrics, {n: t.detach().clone() for n, t in algorithm.meta.items()}, algorithm.lopt.state_dict())
        )
    (m0, init0, lopt0), (m1, init1, lopt1) = outcomes
    assert m0["loss"] == pytest.approx(m1["loss"], rel=1e-6)
    for n in init0:
        torch.testing.assert_close(init0[n], init1[n], rtol=1e-5, atol=1e-7)
    for k in lopt0:
        torch.testing.assert_close(lopt0[k], lopt1[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lopt_checkpoint_segment": -1}, "lopt_checkpoint_segment"),
        ({"lopt_truncate": 0}, "lopt_truncate"),
        ({"k_query": 0}, "k_query"),
        ({"lopt_max_step": 0.0}, "max_step"),
        ({"lopt_hidden": 0}, "hidden"),
    ],
)
def test_bad_settings_are_clear_errors(override, message):
    # Refused when the params are read (in the service: when the body arrives), not when the algorithm is built.
    with pytest.raises(ConfigError, match=message):
        Params.from_dict({**PARAMS, **override})


def test_unknown_kind_is_rejected_by_the_params_file():
    with pytest.raises(ConfigError, match="lopt_kind"):
        Params.from_dict({**PARAMS, "lopt_kind": "gru"})
