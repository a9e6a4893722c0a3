"""The split of a meta-batch across processes, and what the start-up agreement check compares."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kshot.errors import ConfigError
from kshot.models import load_tokenizer
from kshot.training.distributed import local_task_indices, run_fingerprint
from kshot.training.setup import build_tasks


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_every_task_of_a_meta_batch_runs_on_exactly_one_process(world):
    shares = [list(local_task_indices(8, rank, world)) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == list(range(8))
    assert {len(share) for share in shares} == {8 // world}


def test_indivisible_meta_batch_names_the_value_and_the_fix():
    with pytest.raises(
        ConfigError, match=r"meta_batch_size=6 is not divisible by the number of processes \(4\).*1/2/3/6 processes"
    ):
        local_task_indices(6, 0, 4)


def test_fingerprint_tells_apart_what_would_make_processes_diverge(tiny_run):
    config, params = tiny_run
    tasks = build_tasks(config, params, load_tokenizer(config.model.name_or_path))
    state = {"meta": [torch.ones(3), torch.zeros(2)], "outer_optimizer": None}
    base = run_fingerprint(config, params, tasks, state, 0)
    assert (
        run_fingerprint(config, params, tasks, {"meta": [torch.ones(3), torch.zeros(2)], "outer_optimizer": None}, 0)
        == base
    )

    changed_meta = run_fingerprint(
        config, params, tasks, {"meta": [torch.ones(3), torch.full((2,), 1e-7)], "outer_optimizer": None}, 0
    )
    changed_params = run_fingerprint(config, dataclasses.replace(params, inner_lr=2e-3), tasks, state, 0)
    tasks.train[0].labels = 1 - tasks.train[0].labels  # the same texts, other labels
    changed_data = run_fingerprint(config, params, tasks, state, 0)
    assert [k for k in base if changed_meta[k] != base[k]] == ["meta-parameters and outer optimizer state"]
    assert [k for k in base if changed_params[k] != base[k]] == ["config and params"]
    assert [k for k in base if changed_data[k] != base[k]] == ["training data (texts after tokenization, labels)"]
    assert run_fingerprint(config, params, tasks, state, 3)["starting step"] == 3
