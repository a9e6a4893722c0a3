"""kshot on a CUDA GPU: the functional meta-gradients, mixed precision and checkpoints (``-m cuda``).

Skipped where torch sees no GPU (CI and the CPU machines); ``benchmarks/gpu_check.sh`` runs them on one.
The CPU twins of these checks are tests/algorithms/test_gradient_invariants.py, tests/training/test_bf16.py,
tests/algorithms/test_loss_scale.py and tests/training/test_resume.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate.state import AcceleratorState

from kshot.algorithms import get_algorithm
from kshot.config import Params
from kshot.models import load_model
from kshot.training import MetaTrainer
from kshot.training import setup as setup_mod
from kshot.training.setup import make_accelerator, set_dropout

from ..algorithms.gradient_helpers import build, episode, flat, tiny_bert
from ..algorithms.gradient_helpers import params as gradient_params
from ..training.test_resume import StopAt, with_output

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)"),
]


@pytest.fixture(autouse=True)
def fresh_accelerate_state(monkeypatch):
    # accelerate keeps one device and precision per process; these tests switch both.
    monkeypatch.setattr(setup_mod, "_logged_precision", None)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def cuda_accelerator(precision: str = "no"):
    accelerator = make_accelerator(Params(mixed_precision=precision))
    assert accelerator.device.type == "cuda" and accelerator.mixed_precision == precision
    return accelerator


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# ------------------------------------------------------------------------------------ float32 against float64
@pytest.mark.parametrize(
    ("algorithm", "changes"),
    [
        ("maml", {}),  # second order through both inner steps
        ("maml", {"second_order_steps": 1}),  # truncated
        ("fomaml", {}),  # first order
        ("metasgd", {}),  # second order, learned rates
        ("anil", {}),  # the head's inner loop on features computed once
        ("maml", {"gradient_checkpointing": True}),  # recomputed forward passes
    ],
)
def test_cuda_meta_gradients_match_a_cpu_float64_reference(algorithm, changes):
    """The meta-gradient (first and second order) on the GPU in float32 equals the float64 CPU one."""
    ep = episode(seed=4)
    reference_alg = build(algorithm, tiny_bert(), **changes)  # float64, CPU
    reference, reference_metrics = reference_alg.meta_gradients([ep], total_tasks=1)
    accelerator = cuda_accelerator()
    model = tiny_bert().float().to(accelerator.device)
    alg = get_algorithm(algorithm)(model, gradient_params(algorithm=algorithm, **changes), accelerator, 0)
    grads, metrics = alg.meta_gradients([ep], total_tasks=1)
    assert all(g.device.type == "cuda" for g in grads)
    value, expected = flat(grads).double().cpu(), flat(reference)
    assert relative_error(value, expected) < 1e-4
    assert metrics["loss"] == pytest.approx(reference_metrics["loss"], rel=1e-5)


# ------------------------------------------------------------------------------------ bf16 and fp16
def tiny(model_dir) -> torch.nn.Module:
    model = load_model(str(model_dir))
    set_dropout(model, 0.0)  # the same function in every precision
    return model


def episodes(n: int = 2):
    return [episode(seed=7 + 10 * i, n_support=8, n_query=8) for i in range(n)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize(
    ("algorithm", "changes"),
    [
        ("maml", {"inner_optimizer": "sgd", "inner_lr": 1e-2}),
        ("fomaml", {"inner_optimizer": "adam", "inner_lr": 1e-3}),
        ("anil", {"inner_optimizer": "sgd", "inner_lr": 1e-1}),
    ],
)
def test_mixed_precision_meta_gradients_on_cuda_agree_with_float32(tiny_model_dir, precision, algorithm, changes):
    """Autocast episodes on the GPU; fp16 with its loss scale (the CPU's bf16 error is about 1 %)."""
    params = Params.from_dict({"algorithm": algorithm, "inner_steps": 3, "inner_batch_size": 8, **changes})
    results = {}
    for p in ("no", precision):
        accelerator = cuda_accelerator(p)
        alg = get_algorithm(algorithm)(tiny(tiny_model_dir).to(accelerator.device), params, accelerator, 0)
        assert alg.loss_scaler.enabled == (p == "fp16")
        grads, metrics = alg.meta_gradients(episodes(), total_tasks=2)
        results[p] = (flat(grads).double().cpu(), metrics["loss"])
    (reference, reference_loss), (value, loss) = results["no"], results[precision]
    assert bool(torch.isfinite(value).all())
    assert relative_error(value, reference) < 0.05
    assert cosine(value, reference) > 0.999
    assert loss == pytest.approx(reference_loss, rel=1e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("algorithm", ["maml", "anil", "protonet", "reptile"])
def test_mixed_precision_meta_steps_on_cuda_train_like_float32(tiny_model_dir, precision, algorithm):
    """A few whole meta-steps in each precision: finite, float32 master weights, and the same direction."""
    params = Params.from_dict(
        {"algorithm": algorithm, "inner_steps": 2, "inner_batch_size": 8, "inner_optimizer": "sgd", "inner_lr": 1e-2}
    )
    start = flat([p.detach() for p in tiny(tiny_model_dir).parameters()])
    moved = {}
    for p in ("no", precision):
        accelerator = cuda_accelerator(p)
        alg = get_algorithm(algorithm)(tiny(tiny_model_dir).to(accelerator.device), params, accelerator, 0)
        for step in range(3):
            metrics = alg.meta_step(episodes(), step, 2)
            assert all(v == v for v in metrics.values()), metrics  # no NaN
        weights = list(alg.model.parameters())
        assert {w.dtype for w in weights} == {torch.float32} and weights[0].device.type == "cuda"
        moved[p] = flat([w.detach().cpu() for w in weights]) - start
        if p == "fp16" and hasattr(alg, "loss_scaler"):
            assert alg.loss_scaler.enabled and alg.loss_scaler.skipped_steps == 0
    assert bool(torch.isfinite(moved[precision]).all())
    assert cosine(moved[precision], moved["no"]) > 0.95


# ------------------------------------------------------------------------------------ checkpoints across devices
def test_a_checkpoint_saved_on_cuda_resumes_on_the_cpu(tiny_run, tmp_path, monkeypatch):
    """Interrupted on the GPU, resumed on a CPU-only process: it continues where it stopped and ends where a
    run on the CPU ends (up to float32 rounding: SGD steps, no dropout, so nothing amplifies it)."""
    config, params = tiny_run
    params = dataclasses.replace(
        params, algorithm="reptile", outer_optimizer="none", outer_lr=0.5, inner_optimizer="sgd", dropout=0.0
    )
    broken = MetaTrainer(with_output(config, tmp_path / "resumed"), params, callbacks=[StopAt(3, "should_stop")])
    assert broken.accelerator.device.type == "cuda"
    assert broken.train().steps == 3

    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = MetaTrainer(with_output(config, tmp_path / "resumed"), params)
    assert resumed.accelerator.device.type == "cpu"
    result = resumed.train(resume=True)
    assert resumed.start_step == 3 and result.steps == params.meta_steps
    assert all(m.device.type == "cpu" for m in resumed.algorithm.state_dict()["meta"])

    AcceleratorState._reset_state(reset_partial_state=True)
    full = MetaTrainer(with_output(config, tmp_path / "full"), params)
    full.train()
    for a, b in zip(resumed.algorithm.state_dict()["meta"], full.algorithm.state_dict()["meta"]):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


@pytest.mark.parametrize("algorithm", ["transfer", "learned_optimizer"])
def test_meta_training_without_a_loss_scale_refuses_fp16(tiny_model_dir, algorithm):
    from kshot.errors import ConfigError

    accelerator = cuda_accelerator("fp16")
    params = Params.from_dict({"algorithm": algorithm, "inner_steps": 1, "inner_batch_size": 8})
    alg = get_algorithm(algorithm)(tiny(tiny_model_dir).to(accelerator.device), params, accelerator, 0)
    with pytest.raises(ConfigError, match="fp16 loss scaling"):
        alg.meta_step(episodes(1), 0, 1)
