"""bf16 on the CPU: autocast with float32 master weights, for every algorithm.

The meta-gradients of a bf16 run against float32 on the tiny random BERT (tests/synthetic.py, dropout
off), measured on an Intel Xeon with AMX-BF16 (torch 2.13), meta-batch of 2, 3 inner steps, 3 seeds:

==========================================  ==================  ===================
configuration                               relative error      cosine similarity
==========================================  ==================  ===================
plain gradient (inner_steps 0)              0.55 - 1.15 %       0.99994 - 0.99999
fomaml, inner SGD / Adam                    0.62 - 1.18 %       0.99993 - 0.99998
maml (second order), inner SGD              0.62 - 0.74 %       0.99997 - 0.99998
metasgd, inner SGD                          0.62 - 0.74 %       0.99997 - 0.99998
anil, inner SGD                             0.61 - 0.79 %       0.99997 - 0.99998
maml, inner Adam, second_order_steps=1      1.4 - 2.4 %         0.9997 - 0.9999
anil, inner Adam, 10 steps (ARSC's config)  4 - 25 %            0.969 - 0.999
anil, the same with the prototype head      0.8 - 66 %          0.76 - 0.99997
maml / metasgd, Adam, second order          31 % - 2e7 (!)      0.05 - 0.95
==========================================  ==================  ===================

The last row is why ``auto`` keeps such meta-training in float32 (precision.bf16_training_risk):
Adam's first step g/(|g|+eps) has the derivative eps/(|g|+eps)², which multiplies bf16's rounding of
the tiny gradient coordinates; float32 agrees with float64 there (cosine 1.0). The tolerances below
leave about 2-3x the measured error. The episodes' query losses differ by at most 6e-5 (relative;
3e-4 with the prototype head); the tests allow 1e-3.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors import safe_open

from kshot.algorithms import available, get_algorithm
from kshot.algorithms.functional import AdamUpdate, SGDUpdate
from kshot.config import Params
from kshot.models import load_model
from kshot.training import MetaTrainer, TrainerCallback
from kshot.training import precision as precision_mod
from kshot.training import setup as setup_mod
from kshot.training.checkpoint import checkpoint_path
from kshot.training.precision import bf16_training_risk, resolve_precision
from kshot.training.setup import make_accelerator, set_dropout

from ..algorithms.gradient_helpers import episode, flat, task

ALGORITHMS = available()  # every registered algorithm, so a new one cannot skip these checks


@pytest.fixture(autouse=True)
def fresh_accelerate_state(monkeypatch):
    # accelerate keeps one precision per process; these tests switch it, and leave an empty state behind.
    monkeypatch.setattr(setup_mod, "_logged_precision", None)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")  # bf16 on the CPU, also on a machine with a GPU
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture()
def bf16():
    return make_accelerator(Params(mixed_precision="bf16"))


def tiny(model_dir) -> torch.nn.Module:
    model = load_model(str(model_dir))
    set_dropout(model, 0.0)  # the same function in both precisions
    return model


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def meta_gradients(model, params: Params, accelerator, seed: int) -> tuple[torch.Tensor, float]:
    alg = get_algorithm(params.algorithm)(copy.deepcopy(model), params, accelerator, 0)
    episodes = [episode(seed=seed + 10 * i, n_support=8, n_query=8) for i in range(2)]
    grads, metrics = alg.meta_gradients(episodes, total_tasks=2)
    return flat(grads).double(), metrics["loss"]


def encoder_dtypes(model) -> set[torch.dtype]:
    """Collects the dtypes the first encoder layer's output projection computes in."""
    seen: set[torch.dtype] = set()
    model.base_model.encoder.layer[0].output.dense.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


def tensor_dtypes(obj, out: set | None = None) -> set[torch.dtype]:
    out = set() if out is None else out
    if isinstance(obj, torch.Tensor):
        out.add(obj.dtype)
    elif isinstance(obj, dict):
        for v in obj.values():
            tensor_dtypes(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            tensor_dtypes(v, out)
    return out


# ------------------------------------------------------------------------------------ accelerate plumbing
def test_bf16_accelerator_autocasts_on_the_cpu(bf16):
    """accelerate (1.x) turns native_amp on for bf16 on the CPU and its autocast is torch's CPU autocast."""
    assert bf16.device.type == "cpu" and bf16.mixed_precision == "bf16" and bf16.native_amp
    weight = torch.randn(4, 4)
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert (torch.randn(2, 4) @ weight).dtype == torch.bfloat16
    assert weight.dtype == torch.float32


def test_a_second_accelerator_may_change_the_precision():
    """accelerate refuses a second precision in one process; make_accelerator starts its state afresh."""
    assert make_accelerator(Params(mixed_precision="no")).mixed_precision == "no"
    assert make_accelerator(Params(mixed_precision="bf16")).mixed_precision == "bf16"
    assert make_accelerator(Params(mixed_precision="no")).mixed_precision == "no"


# ------------------------------------------------------------------------------------ meta-gradients
@pytest.mark.parametrize(
    ("algorithm", "changes", "max_error", "min_cosine"),
    [
        ("fomaml", {"inner_steps": 0}, 0.03, 0.9995),  # the plain gradient of the query loss
        ("fomaml", {"inner_optimizer": "sgd", "inner_lr": 1e-2}, 0.03, 0.9995),
        ("fomaml", {"inner_optimizer": "adam", "inner_lr": 1e-3}, 0.03, 0.9995),
        ("maml", {"inner_optimizer": "sgd", "inner_lr": 1e-2}, 0.03, 0.9995),  # second order
        ("metasgd", {"inner_optimizer": "sgd", "inner_lr": 1e-2}, 0.03, 0.9995),
        ("anil", {"inner_optimizer": "sgd", "inner_lr": 1e-1}, 0.03, 0.9995),
        ("maml", {"inner_optimizer": "adam", "inner_lr": 1e-3, "second_order_steps": 1}, 0.06, 0.998),
        # The ARSC configuration: second order through the head's Adam steps, which amplify bf16's
        # rounding of the body's features (see the module docstring).
        ("anil", {"inner_optimizer": "adam", "inner_lr": 1e-3, "inner_steps": 10}, 0.5, 0.9),
    ],
)
def test_bf16_meta_gradients_agree_with_float32(tiny_model_dir, bf16, algorithm, changes, max_error, min_cosine):
    model = tiny(tiny_model_dir)
    params = Params.from_dict({"algorithm": algorithm, "inner_steps": 3, "inner_batch_size": 8, **changes})
    for seed in range(3):
        reference, reference_loss = meta_gradients(model, params, None, seed)
        value, loss = meta_gradients(model, params, bf16, seed)
        assert relative_error(value, reference) < max_error, seed
        assert cosine(value, reference) > min_cosine, seed
        assert loss == pytest.approx(reference_loss, rel=1e-3)  # the episode's query loss


def test_bf16_spoils_second_order_through_a_first_adam_step_and_auto_keeps_it_in_float32(tiny_model_dir, bf16):
    """The reason for precision.bf16_training_risk: maml with Adam inner steps, second order throughout."""
    model = tiny(tiny_model_dir)
    params = Params.from_dict({"algorithm": "maml", "inner_steps": 3, "inner_batch_size": 8, "inner_lr": 1e-3})
    assert params.inner_optimizer == "adam" and not params.first_order  # the defaults
    cosines = [
        cosine(meta_gradients(model, params, bf16, s)[0], meta_gradients(model, params, None, s)[0]) for s in (1, 2)
    ]
    assert min(cosines) < 0.9  # measured 0.08 and 0.05
    assert bf16_training_risk(params) is not None  # auto trains this in float32


# ------------------------------------------------------------------------------------ float32 master state
class RecordingUpdate:
    """An InnerUpdate that records the dtypes of the weights, gradients and state it is given and returns."""

    def __init__(self, inner):
        self.inner, self.dtypes = inner, set()

    def init_state(self, params):
        state = self.inner.init_state(params)
        tensor_dtypes(state, self.dtypes)
        return state

    def __call__(self, params, grads, lr, state):
        new, state = self.inner(params, grads, lr, state)
        for part in (params, grads, lr, new, state):
            tensor_dtypes(part, self.dtypes)
        return new, state


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_weights_fast_weights_and_optimizer_state_stay_float32_under_bf16(tiny_model_dir, bf16, algorithm):
    model = tiny(tiny_model_dir)
    params = Params.from_dict(
        {
            "algorithm": algorithm,
            "inner_steps": 2,
            "inner_batch_size": 4,
            "inner_lr": 1e-3,
            "k_query": 4,
            "eval_batch_size": 4,
            "metric_finetune": True,
        }
    )
    alg = get_algorithm(algorithm)(model, params, bf16, 0)
    computed = encoder_dtypes(model)
    recorder = None
    if isinstance(getattr(alg, "update", None), (SGDUpdate, AdamUpdate)):
        alg.update = recorder = RecordingUpdate(alg.update)
    lopt_dtypes: set[torch.dtype] = set()
    if algorithm == "learned_optimizer":
        step = alg.lopt.step

        def recording_step(params, grads, slots, *args, **kwargs):
            new_params, new_slots = step(params, grads, slots, *args, **kwargs)
            for part in (params, grads, slots, new_params, new_slots):
                tensor_dtypes(part, lopt_dtypes)
            return new_params, new_slots

        alg.lopt.step = recording_step

    metrics = alg.meta_step([episode(seed=s, n_support=6, n_query=5) for s in range(2)], 0, 2)
    assert all(np.isfinite(v) for v in metrics.values())
    alg.adapt(task(6, 7), 2)
    logits = alg.predict(task(5, 8), 4)

    assert torch.bfloat16 in computed  # the forward passes did run in bf16
    assert logits.dtype == np.float32 and np.isfinite(logits[:, :2]).all()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tensor_dtypes(alg.state_dict()) <= {torch.float32, torch.int64}  # weights, outer optimizer state
    if getattr(alg, "adapted", None) is not None:
        assert tensor_dtypes(alg.adapted) == {torch.float32}  # θ′ of the last adapt
    if recorder is not None:
        assert recorder.dtypes == {torch.float32}  # inner steps: θ, gradients, rates, Adam moments, θ′
    if algorithm == "learned_optimizer":
        assert lopt_dtypes == {torch.float32}  # the learned optimizer's inputs, slots and outputs
        assert {p.dtype for p in alg.lopt.parameters()} == {torch.float32}
    if algorithm == "metasgd":
        assert tensor_dtypes(alg.lrs) == {torch.float32}
    support = getattr(alg, "support", None)
    if support is not None:
        assert tensor_dtypes({k: v for k, v in support.items() if v.is_floating_point()}) == {torch.float32}


# ------------------------------------------------------------------------------------ runs, resume, saving
class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            trainer.control.should_stop = True


def safetensors_dtypes(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as fh:
        return {fh.get_slice(k).get_dtype() for k in fh.keys()}


class Probe(TrainerCallback):
    """Records the dtypes the first encoder layer computes in during training."""

    def __init__(self):
        self.dtypes: set[torch.dtype] = set()

    def on_train_begin(self, trainer):
        self.dtypes = encoder_dtypes(trainer.algorithm.model)


@pytest.mark.parametrize("algorithm", ["reptile", "anil"])
def test_bf16_resume_equals_the_uninterrupted_bf16_run_and_saves_float32(tiny_run, tmp_path, algorithm):
    config, params = tiny_run
    params = dataclasses.replace(params, algorithm=algorithm, mixed_precision="bf16", test_after_train=False)

    probe = Probe()
    full = MetaTrainer(dataclasses.replace(config, output_dir=str(tmp_path / "full")), params, callbacks=[probe])
    reference = full.train()
    assert full.accelerator.mixed_precision == "bf16" and torch.bfloat16 in probe.dtypes

    resumed_dir = tmp_path / "resumed"
    broken = MetaTrainer(dataclasses.replace(config, output_dir=str(resumed_dir)), params, callbacks=[StopAt(3)])
    assert broken.train().stopped_early
    state = torch.load(checkpoint_path(resumed_dir), weights_only=False)
    assert tensor_dtypes(state["algorithm"]) <= {torch.float32, torch.int64}  # a float32 checkpoint
    resumed = MetaTrainer(dataclasses.replace(config, output_dir=str(resumed_dir)), params)
    result = resumed.train(resume=True)

    assert result.steps == reference.steps == params.meta_steps
    full_meta, resumed_meta = full.algorithm.state_dict()["meta"], resumed.algorithm.state_dict()["meta"]
    assert all(torch.equal(a, b) for a, b in zip(full_meta, resumed_meta))
    assert result.validation == reference.validation
    for folder in (tmp_path / "full", resumed_dir):
        assert safetensors_dtypes(folder / "model.safetensors") == {"F32"}  # the saved model is float32


# ------------------------------------------------------------------------------------ choosing the precision
@pytest.fixture()
def hardware(monkeypatch):
    """Sets what the probes report: ``hardware(cpu_flags=[...], cuda=bool)``."""

    def set_(cpu_flags=(), cuda=False):
        monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: sorted(cpu_flags))
        monkeypatch.setattr(precision_mod, "cuda_bf16_native", lambda: cuda)

    return set_


@pytest.mark.parametrize(
    ("requested", "device", "cpu_flags", "cuda", "expected"),
    [
        ("auto", "cpu", ["amx_bf16", "avx512_bf16"], False, "bf16"),
        ("auto", "cpu", ["bf16"], False, "bf16"),  # Arm's BF16 extension
        ("auto", "cpu", [], False, "no"),  # AVX2 / plain AVX512: bf16 would be emulated
        ("auto", "cuda", [], True, "bf16"),
        ("auto", "cuda", ["avx512_bf16"], False, "no"),  # a GPU without native bf16: its CPU does not matter
        ("auto", "mps", ["avx512_bf16"], True, "no"),
        ("no", "cpu", ["avx512_bf16"], True, "no"),
        ("no", "cuda", [], True, "no"),
        ("bf16", "cpu", [], False, "bf16"),  # asked for: emulated, with a warning
        ("bf16", "cuda", [], True, "bf16"),
        ("fp16", "cuda", [], True, "fp16"),
        ("fp16", "cpu", ["avx512_bf16"], False, "no"),  # accelerate does not autocast fp16 on the CPU
    ],
)
def test_resolve_precision_rules(hardware, requested, device, cpu_flags, cuda, expected):
    hardware(cpu_flags, cuda)
    precision, reason = resolve_precision(requested, device)
    assert precision == expected
    assert reason


def test_the_launchers_explicit_choice_wins_over_auto_and_no(hardware):
    hardware(["avx512_bf16"])
    assert resolve_precision("no", "cpu", launcher="bf16")[0] == "bf16"
    assert resolve_precision("auto", "cuda", launcher="fp16")[0] == "fp16"
    assert resolve_precision("auto", "cpu", launcher="no")[0] == "bf16"  # the launcher's default is no choice
    assert resolve_precision("no", "cpu", launcher="no")[0] == "no"
    assert resolve_precision("bf16", "cpu", launcher="no")[0] == "bf16"
    with pytest.raises(Exception, match="mixed_precision"):
        resolve_precision("float8", "cpu")


def params_for(**changes) -> Params:
    return Params.from_dict({"algorithm": "maml", "inner_steps": 5, **changes})


@pytest.mark.parametrize(
    ("changes", "risky"),
    [
        ({}, True),  # maml's defaults: Adam inner steps, second order through all of them
        ({"algorithm": "metasgd"}, True),
        ({"algorithm": "learned_optimizer"}, True),
        ({"second_order_steps": 5}, True),
        ({"second_order_steps": 4}, False),  # the first step first-order
        ({"first_order": True}, False),
        ({"algorithm": "fomaml"}, False),
        ({"inner_optimizer": "sgd"}, False),
        ({"algorithm": "anil"}, False),  # the head alone: milder (see the module docstring)
        ({"algorithm": "reptile"}, False),
        ({"algorithm": "learned_optimizer", "inner_optimizer": "sgd", "first_order": True}, True),  # always
        ({"algorithm": "maml", "inner_steps": 0}, False),
    ],
)
def test_auto_keeps_meta_training_float32_where_bf16_spoils_the_meta_gradient(hardware, changes, risky):
    hardware(["amx_bf16"])
    risk = bf16_training_risk(params_for(**changes))
    assert (risk is not None) == risky
    assert resolve_precision("auto", "cpu", risk=risk)[0] == ("no" if risky else "bf16")
    assert resolve_precision("auto", "cpu", risk=risk, training=False)[0] == "bf16"  # evaluate, adapt, predict
    assert resolve_precision("bf16", "cpu", risk=risk)[0] == "bf16"  # asked for: a warning only


def test_auto_bf16_for_training_is_one_switch(hardware, monkeypatch):
    hardware(["amx_bf16"])
    monkeypatch.setattr(precision_mod, "AUTO_BF16_FOR_TRAINING", False)
    assert resolve_precision("auto", "cpu")[0] == "no"
    assert resolve_precision("auto", "cpu", training=False)[0] == "bf16"


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {}, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision_mod, "CPUINFO", cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision_mod.cpu_bf16_flags() == ["amx_bf16", "avx512_bf16"]
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")  # Arm
    assert precision_mod.cpu_bf16_flags() == ["bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert precision_mod.cpu_bf16_flags() == []


def test_the_choice_and_its_reason_are_logged_once(hardware, caplog):
    hardware(["amx_bf16", "avx512_bf16"])
    assert Params().mixed_precision == "auto"  # the default
    with caplog.at_level(logging.INFO, logger="kshot.training.setup"):
        accelerator = make_accelerator(Params(algorithm="reptile"))
        make_accelerator(Params(algorithm="reptile"))
    assert accelerator.mixed_precision == "bf16"
    records = [r for r in caplog.records if r.getMessage().startswith("Precision:")]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert (
        records[0].getMessage() == "Precision: bf16 autocast (auto: this CPU has native bf16 (amx_bf16, avx512_bf16))."
    )

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kshot.training.setup"):
        assert make_accelerator(Params(algorithm="maml")).mixed_precision == "no"
        assert make_accelerator(Params(algorithm="maml"), training=False).mixed_precision == "bf16"
        assert make_accelerator(Params(mixed_precision="no")).mixed_precision == "no"
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Precision:")]
    assert len(messages) == 3
    assert "float32" in messages[0] and "second-order" in messages[0]
    assert messages[2] == "Precision: float32 (params.mixed_precision is 'no')."


def test_asking_for_what_the_cpu_cannot_do_is_a_warning(hardware, caplog):
    hardware([])
    with caplog.at_level(logging.INFO, logger="kshot.training.setup"):
        assert make_accelerator(Params(mixed_precision="fp16")).mixed_precision == "no"
        assert make_accelerator(Params(mixed_precision="bf16")).mixed_precision == "bf16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "fp16" in warnings[0] and "emulates" in warnings[1]


# ------------------------------------------------------------------------------------ evaluate, adapt, predict
@pytest.fixture()
def forward_dtypes(monkeypatch):
    """The dtypes every model that evaluate, adapt and predict load computes its first encoder layer in."""
    from kshot import models
    from kshot.training import adapt, predict

    seen: set[torch.dtype] = set()
    load = models.load_model

    def loading(*args, **kwargs):
        model = load(*args, **kwargs)
        model.base_model.encoder.layer[0].output.dense.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        return model

    monkeypatch.setattr(adapt, "load_model", loading)
    monkeypatch.setattr(predict, "load_model", loading)
    monkeypatch.setattr(models, "load_model", loading)  # what training.setup.load_run_model loads with
    return seen


@pytest.mark.parametrize(("precision", "expected"), [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_evaluate_adapt_and_predict_compute_in_the_params_precision(
    tiny_run, tiny_model_dir, tmp_path, forward_dtypes, precision, expected
):
    from kshot.training import adapt_model, evaluate_model, predict_texts

    from .. import synthetic

    config, params = tiny_run
    overrides = {**params.to_dict(), "algorithm": "maml", "mixed_precision": precision}
    results = evaluate_model(tiny_model_dir, config, overrides)
    assert np.isfinite(results["mean"]["accuracy"])
    assert forward_dtypes == {expected}

    forward_dtypes.clear()
    rows = synthetic.make_examples(6, 8, seed=1)
    support = synthetic.write_table(tmp_path / "support.csv", rows)
    adapt_model(tiny_model_dir, support, tmp_path / "adapted", steps=2, params_overrides=overrides)
    assert forward_dtypes == {expected}
    assert safetensors_dtypes(tmp_path / "adapted" / "model.safetensors") == {"F32"}

    forward_dtypes.clear()
    predictions = predict_texts(tmp_path / "adapted", [r["text"] for r in rows], batch_size=4)
    assert forward_dtypes == {expected}  # kshot.json of the adapted folder holds its mixed_precision
    assert all(0.0 <= p["score"] <= 1.0 for p in predictions)
