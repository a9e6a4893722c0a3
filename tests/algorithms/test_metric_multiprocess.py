"""The metric-based algorithms on 2 CPU processes equal the same run on 1 process: gradients are
summed across processes before every Adam step, so every process holds the same parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kshot.config import Params
from kshot.models import load_model
from kshot.models.pooling import to_mean_pooling
from kshot.training.setup import make_accelerator

from .. import synthetic
from ..distributed import worker
from ..distributed.launch import accelerate_launch

ALGORITHMS = ["protonet", "relationnet"]  # the plain encoder, and encoder + learned scorer
PARAMS = {
    # float32: bf16 would amplify the processes' different summation order beyond the 1e-4 compared here.
    "mixed_precision": "no",
    "meta_steps": 3,
    "meta_batch_size": 4,
    "k_support": 4,
    "k_query": 8,
    "max_length": 32,
    "seed": 0,
    "metric_lr": 1e-3,
    "scorer_lr": 1e-3,
    "scorer_hidden": 16,
    "eval_every": 0,
    "checkpoint_every": 0,
    "outer_lr_schedule": "constant",
    "test_after_train": False,
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("metric-distributed")
    data = synthetic.write_review_json(root / "dataset.json")
    return {
        "out": str(root / "results"),
        "config": {
            "data": {
                "format": "review_json",
                "path": str(data),
                "test_domains": ["domain6", "domain7"],
                "cache_dir": str(root / "cache"),
            },
            "model": {"name_or_path": str(tiny_model_dir)},
            "logging": {"log_dir": str(root / "logs"), "progress_bar": False},
        },
        "params": PARAMS,
        # cosine: squared Euclidean distances ignore a shift of every embedding, which leaves the last
        # LayerNorm bias without gradient (see the comparison below).
        "runs": [
            {"name": a, "output_dir": str(root / "runs" / a), "params": {"algorithm": a, "distance": "cosine"}}
            for a in ALGORITHMS
        ],
    }


@pytest.fixture(scope="module")
def launched(spec, tmp_path_factory):
    spec_file = tmp_path_factory.mktemp("spec") / "spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    result = accelerate_launch(
        ["tests/distributed/worker.py", str(spec_file)], home=tmp_path_factory.mktemp("hf_home"), timeout=240
    )
    assert result.returncode == 0, result.stdout[-6000:]
    out = Path(spec["out"])
    return {a: [torch.load(out / f"{a}.rank{r}.pt", weights_only=False) for r in range(2)] for a in ALGORITHMS}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_processes_equal_one_process(launched, spec, tmp_path, tiny_model_dir, algorithm):
    rank0, rank1 = launched[algorithm]
    assert rank0["num_processes"] == 2
    for x, y in zip(rank0["state"]["meta"], rank1["state"]["meta"]):
        assert torch.equal(x, y)
    run = next(r for r in spec["runs"] if r["name"] == algorithm)
    one = worker.run(
        spec,
        {**run, "output_dir": str(tmp_path / "one")},
        tmp_path / "results",
        make_accelerator(Params.from_dict(PARAMS)),
    )
    assert one["num_processes"] == 1
    # Summation order differs between 1 and 2 processes, and Adam divides each gradient by its own
    # size, so a parameter whose true gradient is zero (the relation module's output bias: a softmax
    # ignores a shift of every score) moves by float noise either way. Hence tolerances relative to
    # how far training moved the encoder: tight for the encoder, looser with the scorer included.
    torch.manual_seed(PARAMS["seed"])
    # As the metric algorithms train it: with the (frozen) mean-pooling layer, whose weights are not meta-parameters.
    start = to_mean_pooling(load_model(str(tiny_model_dir), ["negative", "positive"]))
    initial = [p.detach() for p in start.parameters() if p.requires_grad]
    two, ref = rank0["state"]["meta"], one["state"]["meta"]
    n = len(initial)  # the model's parameters; a learned scorer's follow

    def norm(pairs):
        return float(torch.cat([(a - b).reshape(-1) for a, b in pairs]).norm())

    moved = norm(zip(ref[:n], initial))
    assert moved > 1e-2, "training must have moved the encoder"
    assert norm(zip(two[:n], ref[:n])) <= 1e-4 * moved
    assert norm(zip(two, ref)) <= 1e-2 * moved
