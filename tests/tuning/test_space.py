"""space.yaml: validated like config and params; what a warm start may add is exactly what a study can sample."""

from __future__ import annotations

import pytest

from kshot.config import Params
from kshot.errors import ConfigError
from kshot.tuning import SearchSpace

SPACE = {
    "inner_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "inner_steps": {"type": "int", "low": 1, "high": 4},
    "inner_optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
}


def test_a_space_samples_what_it_says():
    import optuna

    space = SearchSpace.from_dict(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask(space.distributions())
        assert 1e-4 <= trial.params["inner_lr"] <= 1e-2 and trial.params["inner_steps"] in (1, 2, 3, 4)
        assert space.contains(trial.params)
        Params.from_dict(trial.params)  # every sample is a valid params set
    assert SearchSpace.from_dict(space.to_dict()) == space  # stored in the study, read back the same


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"inner_lrr": {"type": "float", "low": 0.1, "high": 0.2}}, r"Unknown param 'inner_lrr'.*'inner_lr'"),
        ({"inner_lr": {"type": "flaot", "low": 0.1, "high": 0.2}}, r"inner_lr: Unknown type 'flaot'.*'float'"),
        ({"inner_lr": {"type": "float", "low": 0.1, "hihg": 0.2}}, r"unknown field 'hihg'.*'high'"),
        ({"inner_lr": {"type": "float", "low": 0.2, "high": 0.1}}, r"low \(0.2\) must be below high \(0.1\)"),
        ({"inner_lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log distribution needs low > 0"),
        ({"inner_steps": {"type": "int", "low": 1.5, "high": 4}}, "'low' must be an integer"),
        ({"inner_steps": {"type": "int", "low": 1, "high": 10**9}}, "not a valid value of the param"),
        ({"inner_optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]}}, r"'adamw' is not a valid value"),
        ({"algorithm": {"type": "categorical", "choices": ["anil", "reptile"]}}, "one study tunes one algorithm"),
        ({"test_after_train": {"type": "categorical", "choices": [True]}}, "never score the test tasks"),
        ({"inner_lr": [0.1, 0.2]}, "must be a mapping"),
        ({}, "must map param names to distributions"),
    ],
)
def test_a_bad_space_names_the_key_and_what_to_do(bad, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_dict(bad, source="space.yaml")


def test_contains_is_what_the_space_can_sample():
    space = SearchSpace.from_dict(SPACE)
    inside = {"inner_lr": 1e-3, "inner_steps": 2, "inner_optimizer": "adam"}
    assert space.contains(inside)
    assert not space.contains({**inside, "inner_lr": 0.1})  # above high
    assert not space.contains({**inside, "inner_steps": 2.5})
    assert not space.contains({**inside, "inner_optimizer": "rmsprop"})
    assert not space.contains({"inner_lr": 1e-3})  # a searched param missing
