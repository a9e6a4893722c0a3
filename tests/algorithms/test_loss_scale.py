"""fp16 loss scaling (algorithms/loss_scale.py) in the functional inner loop, the outer meta-step and the
plain training steps, checked on the CPU under torch's fp16 autocast (accelerate never autocasts fp16 on
the CPU, so the scaler is set by hand here; on a GPU, tests/cuda runs the same through accelerate)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kshot.algorithms import get_algorithm
from kshot.algorithms.functional import SGDUpdate, inner_loop, loss_of, weights_of
from kshot.algorithms.inner_loop import train_steps
from kshot.algorithms.loss_scale import LossScaler
from kshot.config import Params
from kshot.errors import ModelError
from kshot.models import load_model
from kshot.training.setup import set_dropout

from .gradient_helpers import episode, flat, task


def fp16():
    return torch.autocast("cpu", dtype=torch.float16)


def tiny(model_dir) -> torch.nn.Module:
    model = load_model(str(model_dir))
    set_dropout(model, 0.0)
    return model


class CapturingUpdate(SGDUpdate):
    """SGD that keeps the gradients it was given."""

    def __init__(self):
        self.grads: list[torch.Tensor] = []

    def __call__(self, params, grads, lr, state):
        self.grads.append(flat([g.detach().float() for g in grads.values()]))
        return super().__call__(params, grads, lr, state)


def inner_gradient(model, autocast, scaler: LossScaler | None, weight: float = 1.0) -> torch.Tensor:
    """The gradient of the first inner step on a support batch, of ``weight`` × the cross-entropy."""
    support = task(8, seed=1)
    from kshot.data import collate

    batch = collate(support.input_ids, 0, support.labels)
    update = CapturingUpdate()

    def loss_fn(current, b, keep):
        return weight * loss_of(model, current, b, double_backward=keep)

    kwargs = {"scaler": scaler} if scaler is not None else {}
    inner_loop(
        model, weights_of(model), [batch], 0.1, update, track_meta=False, autocast=autocast, loss_fn=loss_fn, **kwargs
    )
    return update.grads[0]


def cosine(a, b) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_fp16_gradients_that_underflow_are_recovered_by_the_loss_scale(tiny_model_dir):
    """A small loss (here 1e-7 × the cross-entropy, as a loss weight makes it) has gradients below fp16's
    smallest number: unscaled they vanish, scaled they are float32's."""
    model = tiny(tiny_model_dir)
    reference = inner_gradient(model, lambda: torch.autocast("cpu", enabled=False), None, weight=1e-7)
    unscaled = inner_gradient(model, fp16, None, weight=1e-7)
    scaled = inner_gradient(model, fp16, LossScaler(enabled=True), weight=1e-7)
    assert reference.norm() > 0
    assert float(unscaled.norm() / reference.norm()) < 0.5  # most of the gradient is lost (measured: all of it)
    assert cosine(scaled, reference) > 0.999
    assert float((scaled - reference).norm() / reference.norm()) < 0.05


def test_an_inner_step_that_overflows_is_taken_again_at_a_lower_scale(tiny_model_dir):
    model = tiny(tiny_model_dir)
    reference = inner_gradient(model, lambda: torch.autocast("cpu", enabled=False), None)
    scaler = LossScaler(enabled=True, init_scale=2.0**40)  # 2**40 × the loss's gradients overflow fp16 (65504)
    scaled = inner_gradient(model, fp16, scaler)
    assert scaler.value < 2.0**40
    assert bool(torch.isfinite(scaled).all())
    assert cosine(scaled, reference) > 0.999


def test_an_inner_step_that_is_never_finite_is_a_clear_error(tiny_model_dir):
    model = tiny(tiny_model_dir)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")  # a NaN in the weights is not an overflow
    with pytest.raises(ModelError, match="not finite at any loss scale"):
        inner_gradient(model, fp16, LossScaler(enabled=True))


@pytest.mark.parametrize("algorithm", ["fomaml", "maml", "anil", "protonet"])
def test_an_overflowing_meta_gradient_skips_the_step_and_the_next_ones_apply(tiny_model_dir, algorithm):
    """GradScaler's rule, for the functional meta-gradient and the metric family's: a step whose gradient
    overflowed changes nothing and halves the scale; once the scale fits, steps apply again. (fomaml and maml
    without inner steps: an inner step that overflows lowers the shared scale before the query pass.)"""
    steps = 1 if algorithm == "anil" else 0  # anil's inner steps run the head alone, in float32
    params = Params.from_dict(
        {"algorithm": algorithm, "inner_steps": steps, "inner_optimizer": "sgd", "inner_lr": 1e-2, "meta_lr": 1e-3}
    )
    alg = get_algorithm(algorithm)(tiny(tiny_model_dir), params, None, 0)
    alg.loss_scaler = LossScaler(enabled=True, init_scale=2.0**40)
    before = [p.detach().clone() for p in alg.model.parameters()]
    ep = episode(seed=2, n_support=8, n_query=8)
    with fp16():
        alg.meta_step([ep], 0, 1)
    assert all(torch.equal(a, p) for a, p in zip(before, alg.model.parameters()))
    assert alg.loss_scaler.value == 2.0**39 and alg.loss_scaler.skipped_steps == 1
    for step in range(1, 40):
        with fp16():
            alg.meta_step([ep], step, 1)
        if not all(torch.equal(a, p) for a, p in zip(before, alg.model.parameters())):
            break
    assert alg.loss_scaler.value <= 2.0**24  # fp16 gradients of order 1 fit below 2**16 × 2**8
    assert all(bool(torch.isfinite(p).all()) for p in alg.model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, alg.model.parameters()))


def test_training_steps_under_fp16_with_an_overflowing_scale_match_float32(tiny_model_dir):
    """Reptile's and fine-tuning's steps (``loss.backward``): an overflowing step is taken again lower."""
    model = tiny(tiny_model_dir)
    reference = copy.deepcopy(model)
    support = task(8, seed=3)

    def run(m, scaler, autocast):
        with autocast:
            train_steps(m, support, 3, 8, 1e-3, "sgd", 0, "cpu", np.random.default_rng(0), scaler=scaler)

    run(reference, None, torch.autocast("cpu", enabled=False))
    scaler = LossScaler(enabled=True, init_scale=2.0**40)
    run(model, scaler, fp16())
    assert scaler.value < 2.0**40
    start = flat([p.detach() for p in tiny(tiny_model_dir).parameters()])
    moved = flat([p.detach() for p in model.parameters()]) - start
    expected = flat([p.detach() for p in reference.parameters()]) - start
    assert cosine(moved, expected) > 0.99


def test_the_loss_scale_is_part_of_an_algorithms_state(tiny_model_dir):
    """Exact resume under fp16: the scale and its count of clean steps travel with the checkpoint."""
    params = Params.from_dict({"algorithm": "maml", "inner_steps": 1, "inner_optimizer": "sgd"})
    alg = get_algorithm("maml")(tiny(tiny_model_dir), params, None, 0)
    alg.loss_scaler = LossScaler(enabled=True, init_scale=2.0**10)
    alg.loss_scaler.clean_steps = 7
    state = alg.state_dict()
    other = get_algorithm("maml")(tiny(tiny_model_dir), params, None, 0)
    other.loss_scaler = LossScaler(enabled=True)
    other.load_state_dict(state)
    assert (other.loss_scaler.value, other.loss_scaler.clean_steps) == (2.0**10, 7)


def test_float32_and_bf16_runs_have_no_loss_scale(tiny_model_dir):
    alg = get_algorithm("maml")(tiny(tiny_model_dir), Params.from_dict({"algorithm": "maml"}), None, 0)
    assert not alg.loss_scaler.enabled and "loss_scale" not in alg.state_dict()
