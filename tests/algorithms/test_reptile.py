"""Reptile on a tiny BERT: the outer update's arithmetic, resets, one working model, train/eval modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kshot.algorithms import get_algorithm
from kshot.algorithms.reptile import Reptile
from kshot.config import DataConfig, Params
from kshot.data import EpisodeSampler, load_tasks, tokenize_collection
from kshot.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def collection(tiny_model_dir, tokenizer, tmp_path_factory):
    from .. import synthetic

    path = synthetic.write_review_json(tmp_path_factory.mktemp("reptile-data") / "dataset.json")
    tasks = load_tasks(DataConfig.from_dict({"format": "review_json", "path": str(path), "test_domains": ["domain7"]}))
    tokenize_collection(tasks, tokenizer, 32)
    return tasks


def make_params(**kwargs) -> Params:
    base = {
        "meta_batch_size": 3,
        "k_support": 4,
        "k_query": 6,
        "inner_steps": 3,
        "inner_batch_size": 4,
        "inner_lr": 1e-2,
        "inner_optimizer": "sgd",
        "outer_lr": 0.5,
        "seed": 0,
    }
    return Params.from_dict({**base, **kwargs})


def make_reptile(model_dir, tokenizer, params: Params) -> Reptile:
    torch.manual_seed(0)
    model = load_model(str(model_dir), ["negative", "positive"])
    return Reptile(model, params, None, tokenizer.pad_token_id)


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def adapted_weights(algo: Reptile, episodes) -> list[list[torch.Tensor]]:
    """θ′ of each episode, from the algorithm's own few-shot entry point (adapt starts from θ)."""
    out = []
    for ep in episodes:
        algo.adapt(ep.support, algo.params.inner_steps, seed=ep.seed)
        out.append(weights(algo.model))
    algo.reset()
    return out


def expected_update(theta, adapted, lr):
    """θ + lr · mean_i(θ′_i − θ), parameter by parameter."""
    return [t + lr * torch.stack([a[j] - t for a in adapted]).mean(dim=0) for j, t in enumerate(theta)]


def assert_all_close(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=atol, rtol=1e-5)


def test_registry_finds_reptile():
    assert get_algorithm("reptile") is Reptile


@pytest.mark.parametrize(("outer_optimizer", "lr_scale"), [("none", 1.0), ("none", 0.3), ("sgd", 1.0), ("sgd", 0.3)])
def test_outer_update_equals_hand_computed_reptile_step(
    tiny_model_dir, tokenizer, collection, outer_optimizer, lr_scale
):
    params = make_params(outer_optimizer=outer_optimizer)
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    episodes = EpisodeSampler(collection.train, params, collection.label_names).meta_batch(0)
    theta = weights(algo.model)
    adapted = adapted_weights(algo, episodes)
    assert any(not torch.equal(a, t) for a, t in zip(adapted[0], theta)), "the inner loop must change the weights"
    assert not all(torch.equal(a, b) for a, b in zip(adapted[0], adapted[1])), "different tasks adapt differently"

    metrics = algo.meta_step(episodes, step=0, total_tasks=len(episodes), lr_scale=lr_scale)

    expected = expected_update(theta, adapted, params.outer_lr * lr_scale)
    assert_all_close(algo.state.meta, expected)
    assert_all_close(weights(algo.model), expected)  # the working model holds the new θ after the step
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["query_loss"])


def test_outer_lr_one_with_one_task_lands_on_the_adapted_weights(tiny_model_dir, tokenizer, collection):
    params = make_params(meta_batch_size=1, outer_lr=1.0)
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    episodes = EpisodeSampler(collection.train, params, collection.label_names).meta_batch(0)
    (adapted,) = adapted_weights(algo, episodes)
    algo.meta_step(episodes, 0, 1)
    assert_all_close(algo.state.meta, adapted)


def test_total_tasks_divides_the_summed_deltas(tiny_model_dir, tokenizer, collection):
    # With several processes each one sums its own tasks' deltas and divides by the global count.
    params = make_params()
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    episodes = EpisodeSampler(collection.train, params, collection.label_names).meta_batch(0)
    theta = weights(algo.model)
    adapted = adapted_weights(algo, episodes[:2])
    algo.meta_step(episodes[:2], 0, total_tasks=4)
    expected = [t + params.outer_lr * sum(a[j] - t for a in adapted) / 4 for j, t in enumerate(theta)]
    assert_all_close(algo.state.meta, expected)


def test_adam_outer_optimizer_moves_along_the_mean_delta(tiny_model_dir, tokenizer, collection):
    params = make_params(outer_optimizer="adam", outer_lr=1e-3)
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    episodes = EpisodeSampler(collection.train, params, collection.label_names).meta_batch(0)
    theta = weights(algo.model)
    adapted = adapted_weights(algo, episodes)
    algo.meta_step(episodes, 0, len(episodes))
    for j, t in enumerate(theta):
        mean_delta = torch.stack([a[j] - t for a in adapted]).mean(dim=0)
        step = algo.state.meta[j] - t
        moved = mean_delta.abs() > 1e-6
        # Adam's first step is lr·sign(g) (β1 = 0): each weight moves lr toward the adapted ones.
        assert torch.all(torch.sign(step[moved]) == torch.sign(mean_delta[moved]))
        torch.testing.assert_close(step[moved].abs(), torch.full_like(step[moved], 1e-3), atol=1e-4, rtol=0)


def test_meta_step_is_deterministic(tiny_model_dir, tokenizer, collection):
    params = make_params(inner_optimizer="adam", inner_lr=1e-3)
    results = []
    for _ in range(2):
        algo = make_reptile(tiny_model_dir, tokenizer, params)
        sampler = EpisodeSampler(collection.train, params, collection.label_names)
        for step in range(2):
            algo.meta_step(sampler.meta_batch(step), step, params.meta_batch_size)
        results.append(weights(algo.model))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_reset_restores_the_meta_parameters_exactly(tiny_model_dir, tokenizer, collection):
    params = make_params(inner_optimizer="adam", inner_lr=1e-2)
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    theta = weights(algo.model)
    algo.adapt(collection.train[0].subset(np.arange(8)), steps=5, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(weights(algo.model), theta))
    algo.reset()
    assert all(torch.equal(a, b) for a, b in zip(weights(algo.model), theta))
    # state_dict / load_state_dict round-trip the meta-parameters exactly
    state = algo.state_dict()
    algo.adapt(collection.train[1].subset(np.arange(8)), steps=5, seed=2)
    algo.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(weights(algo.model), theta))


def test_one_working_model_updated_in_place(tiny_model_dir, tokenizer, collection):
    params = make_params()
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    model = algo.model
    params_before = list(model.parameters())
    pointers = [p.data_ptr() for p in params_before]
    sampler = EpisodeSampler(collection.train, params, collection.label_names)
    algo.meta_step(sampler.meta_batch(0), 0, params.meta_batch_size)
    algo.adapt(collection.train[0].subset(np.arange(8)), steps=2)
    assert algo.model is model
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert algo.export_model() is model


def test_train_mode_while_adapting_eval_mode_while_scoring(tiny_model_dir, tokenizer, collection):
    params = make_params()
    algo = make_reptile(tiny_model_dir, tokenizer, params)
    dropouts = [m for m in algo.model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert dropouts, "the tiny model must have dropout for this test to mean anything"
    modes: list[tuple[str, bool]] = []
    phase = {"name": ""}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: modes.append((phase["name"], mod.training))) for m in dropouts
    ]
    try:
        phase["name"] = "adapt"
        algo.adapt(collection.train[0].subset(np.arange(8)), steps=2)
        phase["name"] = "predict"
        query = collection.train[0].subset(np.arange(8, 30))
        first = algo.predict(query, batch_size=7)
        second = algo.predict(query, batch_size=7)
        phase["name"] = "meta_step"
        algo.meta_step(
            EpisodeSampler(collection.train, params, collection.label_names).meta_batch(0), 0, params.meta_batch_size
        )
    finally:
        for h in hooks:
            h.remove()
    assert {m for name, m in modes if name == "adapt"} == {True}
    assert {m for name, m in modes if name == "predict"} == {False}
    # inside a meta step: adapting trains, scoring the query set does not
    assert {m for name, m in modes if name == "meta_step"} == {True, False}
    np.testing.assert_array_equal(first, second)  # dropout off while scoring
    assert first.shape == (22, 2)
    # and it really is dropout that eval mode switched off
    algo.model.train()
    with torch.no_grad():
        from kshot.data import collate

        batch = collate(query.input_ids, tokenizer.pad_token_id)
        assert not torch.equal(algo.model(**batch).logits, algo.model(**batch).logits)


def test_predict_keeps_example_order(tiny_model_dir, tokenizer, collection):
    algo = make_reptile(tiny_model_dir, tokenizer, make_params())
    task = collection.train[2]
    logits = algo.predict(task, batch_size=5)
    reversed_logits = algo.predict(task.subset(np.arange(len(task))[::-1]), batch_size=11)
    np.testing.assert_allclose(logits, reversed_logits[::-1], atol=1e-5)


def test_zero_inner_steps_leave_the_model_unchanged(tiny_model_dir, tokenizer, collection):
    algo = make_reptile(tiny_model_dir, tokenizer, make_params())
    theta = weights(algo.model)
    stats = algo.adapt(collection.train[0].subset(np.arange(8)), steps=0)
    assert np.isnan(stats["loss"])
    assert all(torch.equal(a, b) for a, b in zip(weights(algo.model), theta))
