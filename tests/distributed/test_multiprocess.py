"""Meta-training on 2 CPU processes equals meta-training on 1, for the same seed and steps.

One launch of ``worker.py`` on 2 processes runs every scenario (fresh run, a run resumed halfway,
fomaml and protonet, disagreeing processes, an indivisible meta-batch); the 1-process references
run in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kshot.algorithms import available
from kshot.models import load_model

from .conftest import OTHER_ALGORITHMS, PARAMS, assert_same_meta
from .launch import accelerate_launch


@pytest.fixture(scope="module")
def launched(spec, tmp_path_factory):
    """Per run name, the record of each of the 2 processes (index = rank)."""
    spec_file = tmp_path_factory.mktemp("spec") / "spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    result = accelerate_launch(
        ["tests/distributed/worker.py", str(spec_file)], home=tmp_path_factory.mktemp("hf_home"), timeout=240
    )
    assert result.returncode == 0, result.stdout[-6000:]
    out = Path(spec["out"])
    return {run["name"]: [_record(out, run["name"], r) for r in range(2)] for run in spec["runs"]}


def _record(out: Path, name: str, rank: int):
    """The worker's record of a run on one process, or the message of the error that ended it."""
    error = out / f"{name}.rank{rank}.err"
    return error.read_text() if error.exists() else torch.load(out / f"{name}.rank{rank}.pt", weights_only=False)


def initial_meta(tiny_model_dir) -> list[torch.Tensor]:
    torch.manual_seed(PARAMS["seed"])
    return [p.detach().clone() for p in load_model(str(tiny_model_dir), ["negative", "positive"]).parameters()]


def test_two_processes_hold_identical_meta_parameters(launched):
    rank0, rank1 = launched["reptile"]
    assert rank0["num_processes"] == rank1["num_processes"] == 2
    for x, y in zip(rank0["state"]["meta"], rank1["state"]["meta"]):
        assert torch.equal(x, y)


def test_reptile_on_two_processes_equals_one_process(launched, reference, tiny_model_dir):
    assert reference["reptile"]["num_processes"] == 1
    assert_same_meta(launched["reptile"][0], reference["reptile"])
    # The runs did learn something: equality is not that of two untouched initialisations.
    moved = max(
        float((m - i).abs().max()) for m, i in zip(reference["reptile"]["state"]["meta"], initial_meta(tiny_model_dir))
    )
    assert moved > 1e-3


def test_resume_on_two_processes_equals_uninterrupted_run(launched, reference):
    first, second = launched["resume_first_half"][0], launched["resume_second_half"][0]
    assert [h["step"] for h in first["validation"]] == [2]
    assert [h["step"] for h in second["validation"]] == [2, 4]  # the history came back with the checkpoint
    assert_same_meta(second, reference["reptile"])


def test_evaluation_is_split_and_gathered_like_one_process(launched, reference):
    for rank in range(2):
        two, one = launched["reptile"][rank], reference["reptile"]
        assert [h["step"] for h in two["validation"]] == [h["step"] for h in one["validation"]] == [2, 4]
        for got, want in zip(two["validation"] + [two["test"]], one["validation"] + [one["test"]]):
            # 3 validation tasks over 2 processes: an uneven split, gathered back in task order.
            assert list(got["tasks"]) == list(want["tasks"]) and len(got["tasks"]) in (2, 3)
            for name in want["tasks"]:
                assert got["tasks"][name]["n_query"] == want["tasks"][name]["n_query"]
                assert got["tasks"][name]["accuracy"] == pytest.approx(want["tasks"][name]["accuracy"], abs=1e-6)
                assert got["tasks"][name]["macro_f1"] == pytest.approx(want["tasks"][name]["macro_f1"], abs=1e-6)
            assert got["mean"]["accuracy"] == pytest.approx(want["mean"]["accuracy"], abs=1e-6)


def test_a_stop_asked_on_the_main_process_stops_every_process(launched):
    for record in launched["stopped"]:
        assert record["steps"] == 2 and record["stopped_early"]
    for x, y in zip(launched["stopped"][0]["state"]["meta"], launched["stopped"][1]["state"]["meta"]):
        assert torch.equal(x, y)


def test_processes_that_disagree_stop_with_the_same_clear_error(launched):
    errors = launched["disagree"]
    assert errors[0] == errors[1]
    assert "config and params of process 1" in errors[0] and "differs from the main process" in errors[0]


def test_meta_batch_not_divisible_by_processes_is_a_config_error(launched):
    for message in launched["indivisible"]:
        assert message.startswith("params.meta_batch_size=3 is not divisible by the number of processes (2)")
        assert "launch 1/3 processes" in message


@pytest.mark.parametrize("algorithm", OTHER_ALGORITHMS)
def test_other_algorithm_families_on_two_processes_equal_one_process(algorithm, launched, reference, tiny_model_dir):
    if algorithm not in available():
        pytest.skip(f"{algorithm} is not in kshot.algorithms.available() yet")
    rank0, rank1 = launched[algorithm]
    for x, y in zip(rank0["state"]["meta"], rank1["state"]["meta"]):
        assert torch.equal(x, y)
    skip = set()
    if algorithm == "protonet":
        # Distances between mean-pooled embeddings do not change when the last LayerNorm's bias shifts
        # every embedding alike: that bias's gradient is 0 up to rounding, and Adam turns rounding
        # noise into steps of up to ±lr, different for any other summation order.
        names = [n for n, _ in load_model(str(tiny_model_dir), ["negative", "positive"]).named_parameters()]
        skip = {names.index("bert.encoder.layer.1.output.LayerNorm.bias")}
    assert_same_meta(rank0, reference[algorithm], skip=skip)
