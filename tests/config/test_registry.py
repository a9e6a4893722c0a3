"""The torch-free algorithm registry: names, classes and params checks, known before any algorithm is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kshot.config import Params
from kshot.config.algorithms import ALGORITHMS, algorithm_names, algorithm_spec
from kshot.errors import ConfigError

NAMES = [
    "reptile",
    "fomaml",
    "maml",
    "metasgd",
    "anil",
    "finetune",
    "transfer",
    "protonet",
    "matchnet",
    "relationnet",
    "siamese",
    "learned_optimizer",
]


def test_the_registry_names_every_algorithm():
    assert algorithm_names() == NAMES
    for name, spec in ALGORITHMS.items():
        assert spec.name == name
        assert spec.module.startswith("kshot.algorithms.") and spec.class_name.isidentifier()


@pytest.mark.parametrize("name", NAMES)
def test_every_algorithm_validates_with_the_defaults(name):
    assert Params.from_dict({"algorithm": name}).algorithm == name


@pytest.mark.parametrize("name", NAMES)
def test_kshot_algorithms_finds_the_registered_class(name):
    from kshot.algorithms import available, get_algorithm

    assert available() == NAMES
    cls = get_algorithm(name)
    assert cls.__name__ == ALGORITHMS[name].class_name and cls.name == name


def test_unknown_algorithm_names_the_key_and_the_closest_name():
    with pytest.raises(ConfigError, match="^algorithm: Unknown algorithm 'protonett'. Did you mean 'protonet'?"):
        Params.from_dict({"algorithm": "protonett"})
    with pytest.raises(ConfigError, match="^Unknown algorithm 'mam'. Did you mean 'maml'?"):
        algorithm_spec("mam")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lopt_checkpoint_segment": -1}, "'lopt_checkpoint_segment' must be at least 0"),
        ({"lopt_checkpoint_segment": 1001}, "'lopt_checkpoint_segment' must be .* at most 1,000"),
        ({"lopt_truncate": 0}, "'lopt_truncate' must be at least 1"),
        ({"lopt_max_step": 0.0}, "'lopt_max_step' must be above 0"),
        ({"lopt_hidden": 0}, "'lopt_hidden' must be at least 1"),
        ({"lopt_hidden": 1025}, "'lopt_hidden' must be .* at most 1,024"),
        ({"lopt_lr": -1e-3}, "'lopt_lr' must be at least 0"),
        ({"lopt_path_loss_weight": -1.0}, "'lopt_path_loss_weight' must be at least 0"),
        ({"lopt_meta_grad_clip": 0.0}, "'lopt_meta_grad_clip' must be above 0"),
        ({"lopt_kind": "gru"}, "'lopt_kind' must be one of mlp, lstm"),
        ({"k_query": 0}, "learned_optimizer learns from the query loss .*'k_query'"),
        ({"inner_lr": 0.0}, "'inner_lr' must be above 0"),
    ],
)
def test_invalid_learned_optimizer_settings_are_refused_by_params_alone(override, message):
    with pytest.raises(ConfigError, match=message):
        Params.from_dict({"algorithm": "learned_optimizer", **override})


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "learned_optimizer"])
def test_algorithms_that_learn_from_the_query_loss_need_query_examples(name):
    with pytest.raises(ConfigError, match=f"{name} learns from the query loss.*'k_query'"):
        Params.from_dict({"algorithm": name, "k_query": 0})


@pytest.mark.parametrize("name", ["reptile", "finetune", "transfer", "protonet", "matchnet", "relationnet", "siamese"])
def test_the_other_algorithms_accept_no_query_examples(name):
    assert Params.from_dict({"algorithm": name, "k_query": 0}).k_query == 0


def test_inner_lr_zero_is_refused_only_where_it_matters():
    assert Params.from_dict({"algorithm": "reptile", "inner_lr": 0.0}).inner_lr == 0.0


def test_the_learned_optimizer_build_time_check_uses_the_same_rules():
    from kshot.algorithms.learned_optimizer.algorithm import check_params

    with pytest.raises(ConfigError, match="'params.lopt_truncate'"):
        check_params(Params(algorithm="learned_optimizer", lopt_truncate=0))
    with pytest.raises(ConfigError, match="'params.k_query'"):
        check_params(Params(algorithm="reptile", k_query=0))  # built as learned_optimizer whatever it says
    check_params(Params(algorithm="learned_optimizer"))


_NO_TORCH = """
import json, sys
import kshot.config
from kshot.config.algorithms import algorithm_names
for name in algorithm_names():
    kshot.config.Params.from_dict({"algorithm": name, "k_query": 4, "lopt_truncate": 1})
try:
    kshot.config.Params.from_dict({"algorithm": "learned_optimizer", "lopt_hidden": 0})
except kshot.errors.ConfigError:
    pass
else:
    raise SystemExit("lopt_hidden=0 accepted")
import kshot.service.schemas as schemas
schemas.TrainRequest(config={"data": {"format": "arsc"}}, params={"algorithm": "learned_optimizer", "meta_steps": 3})
try:
    schemas.TrainRequest(params={"meta_steps": 2**63})
except ValueError:
    pass
else:
    raise SystemExit("meta_steps=2**63 accepted")
print(json.dumps([m for m in ("torch", "transformers") if m in sys.modules]))
"""


def test_validating_params_and_requests_imports_neither_torch_nor_transformers():
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
