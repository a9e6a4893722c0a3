"""params.mixed_precision and params.gradient_checkpointing reach accelerate and the model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate.state import AcceleratorState

from kshot.config import Params
from kshot.training import MetaTrainer, TrainerCallback
from kshot.training.setup import make_accelerator


@pytest.fixture()
def fresh_accelerate_state():
    # accelerate keeps one process-wide state; a test that changes the precision must start from,
    # and leave behind, an uninitialised one.
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


class Probe(TrainerCallback):
    """Records the dtype of the classifier's output and counts forward calls of the first layer's
    attention (inside the checkpointed region, so recomputations count too)."""

    def __init__(self):
        self.dtypes, self.layer_calls = set(), 0

    def on_train_begin(self, trainer) -> None:
        model = trainer.algorithm.model
        model.classifier.register_forward_hook(lambda m, i, out: self.dtypes.add(out.dtype))
        model.bert.encoder.layer[0].attention.register_forward_hook(
            lambda *a: setattr(self, "layer_calls", self.layer_calls + 1)
        )


def checkpointing_on(model) -> bool:
    # transformers 5 renamed the flag (the old name warns); 4.x has only the old one.
    flag = getattr(model, "is_activation_checkpointing", None)
    return model.is_gradient_checkpointing if flag is None else flag


def short(params: Params, **changes) -> Params:
    return dataclasses.replace(params, meta_steps=2, eval_every=0, test_after_train=False, **changes)


def test_bf16_from_params_reaches_the_forward_pass(tiny_run, fresh_accelerate_state):
    config, params = tiny_run
    probe = Probe()
    trainer = MetaTrainer(config, short(params, mixed_precision="bf16"), callbacks=[probe])
    trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16"
    assert torch.bfloat16 in probe.dtypes
    assert all(m.dtype == torch.float32 for m in trainer.algorithm.state_dict()["meta"])  # master weights stay fp32


def test_mixed_precision_of_the_launcher_applies_when_params_say_no(monkeypatch, fresh_accelerate_state):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    assert make_accelerator(Params(mixed_precision="no")).mixed_precision == "bf16"


def test_gradient_checkpointing_reaches_the_model_and_changes_no_result(tiny_run):
    config, params = tiny_run
    runs = {}
    for checkpointing in (False, True):
        probe = Probe()
        trainer = MetaTrainer(config, short(params, gradient_checkpointing=checkpointing), callbacks=[probe])
        trainer.train()
        runs[checkpointing] = (trainer, probe)
    (plain, plain_probe), (ckpt, ckpt_probe) = runs[False], runs[True]
    assert checkpointing_on(ckpt.algorithm.model) and not checkpointing_on(plain.algorithm.model)
    # Each forward with a backward pass runs the layer again: the inner steps of 2 meta-steps and of the
    # final validation's adaptation; scoring forwards (no gradient) do not.
    training_forwards = 2 * params.meta_batch_size * params.inner_steps + params.eval_tasks * params.eval_inner_steps
    assert ckpt_probe.layer_calls - plain_probe.layer_calls == training_forwards
    for a, b in zip(plain.algorithm.state_dict()["meta"], ckpt.algorithm.state_dict()["meta"]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
