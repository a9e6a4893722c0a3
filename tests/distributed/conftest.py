"""Shared by the multi-process tests: the runs (tiny model, synthetic data) and their 1-process references."""

from __future__ import annotations

import pytest

from kshot.algorithms import available
from kshot.config import Params
from kshot.training.setup import make_accelerator

from .. import synthetic
from . import worker

STEPS = 4
PARAMS = {
    "meta_steps": STEPS,
    "meta_batch_size": 4,
    "k_support": 4,
    "k_query": 8,
    "inner_steps": 2,
    "inner_batch_size": 8,
    "inner_lr": 1e-3,
    "eval_every": 2,
    "eval_tasks": 3,
    "eval_inner_steps": 2,
    "checkpoint_every": 2,
    "max_length": 32,
    "seed": 0,
    "outer_lr_schedule": "constant",
    "test_after_train": False,
    # float32: the claim is that N processes compute what 1 does, up to float32 reduction order. Under
    # bf16 autocast the products' rounding follows the kernel's blocking, which follows the threads per
    # process (1 under accelerate launch, all cores here): 2e-5 apart on an AMX machine in CI.
    "mixed_precision": "no",
}
# One algorithm of each family besides Reptile: MAML-family meta-gradients, metric-learning gradients.
OTHER_ALGORITHMS = ["fomaml", "protonet"]


@pytest.fixture(scope="package")
def spec(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("distributed")
    data = synthetic.write_review_json(root / "dataset.json")
    runs = [
        {"name": "reptile", "output_dir": str(root / "runs" / "reptile"), "params": {"test_after_train": True}},
        {"name": "resume_first_half", "output_dir": str(root / "runs" / "resume"), "params": {"meta_steps": 2}},
        {"name": "resume_second_half", "output_dir": str(root / "runs" / "resume"), "resume": True},
        {
            "name": "disagree",
            "output_dir": str(root / "runs" / "disagree"),
            "params_by_rank": {"1": {"inner_lr": 2e-3}},
        },
        {
            "name": "stopped",
            "output_dir": str(root / "runs" / "stopped"),
            "params": {"meta_steps": 50},
            "stop_main_at": 2,
        },
        {"name": "indivisible", "output_dir": str(root / "runs" / "indivisible"), "params": {"meta_batch_size": 3}},
    ]
    runs += [
        {"name": name, "output_dir": str(root / "runs" / name), "params": {"algorithm": name, "outer_lr": 1e-3}}
        for name in OTHER_ALGORITHMS
        if name in available()
    ]
    return {
        "root": str(root),
        "out": str(root / "results"),
        "config": {
            "data": {
                "format": "review_json",
                "path": str(data),
                "validation_domains": ["domain5"],
                "test_domains": ["domain6", "domain7"],
                "cache_dir": str(root / "cache"),
            },
            "model": {"name_or_path": str(tiny_model_dir)},
            "logging": {"log_dir": str(root / "logs"), "progress_bar": False},
        },
        "params": PARAMS,
        "runs": runs,
    }


@pytest.fixture(scope="package")
def reference(spec, tmp_path_factory):
    """The runs of each algorithm on 1 process, in this process."""
    ref = tmp_path_factory.mktemp("reference")
    accelerator = make_accelerator(Params.from_dict(spec["params"]))
    out = {}
    for run in spec["runs"]:
        if run["name"] in ["reptile", *OTHER_ALGORITHMS]:
            out[run["name"]] = worker.run(
                spec, {**run, "output_dir": str(ref / run["name"])}, ref / "results", accelerator
            )
    return out


def assert_same_meta(a: dict, b: dict, atol: float = 1e-5, skip: set[int] = frozenset()) -> None:
    meta_a, meta_b = a["state"]["meta"], b["state"]["meta"]
    assert len(meta_a) == len(meta_b)
    worst = max(float((x - y).abs().max()) for i, (x, y) in enumerate(zip(meta_a, meta_b)) if i not in skip)
    assert worst <= atol, f"meta-parameters differ by up to {worst:.3g} (tolerance {atol})"
