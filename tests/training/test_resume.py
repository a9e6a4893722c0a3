"""Checkpoints: a run killed and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kshot.errors import ConfigError
from kshot.training import MetaTrainer, TrainerCallback
from kshot.training.checkpoint import checkpoint_path


class StopAt(TrainerCallback):
    """Ends training after step ``step``: politely (control.should_stop) or like Ctrl-C."""

    def __init__(self, step: int, how: str):
        self.step, self.how = step, how

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            if self.how == "interrupt":
                raise KeyboardInterrupt
            trainer.control.should_stop = True


def with_output(config, path: Path):
    return dataclasses.replace(config, output_dir=str(path))


def meta_params(trainer) -> list[torch.Tensor]:
    return [m.clone() for m in trainer.algorithm.state_dict()["meta"]]


def saved_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize(
    ("outer_optimizer", "stop_step", "how"),
    [("none", 3, "should_stop"), ("none", 5, "interrupt"), ("adam", 4, "should_stop"), ("adam", 3, "interrupt")],
)
def test_resume_equals_uninterrupted_run(tiny_run, tmp_path, outer_optimizer, stop_step, how):
    config, params = tiny_run
    params = dataclasses.replace(
        params, outer_optimizer=outer_optimizer, outer_lr=0.5 if outer_optimizer == "none" else 1e-3
    )

    full = MetaTrainer(with_output(config, tmp_path / "full"), params)
    reference = full.train()

    broken = MetaTrainer(with_output(config, tmp_path / "resumed"), params, callbacks=[StopAt(stop_step, how)])
    if how == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            broken.train()
    else:
        stopped = broken.train()
        assert stopped.stopped_early and stopped.steps == stop_step and stopped.test is None
    assert checkpoint_path(tmp_path / "resumed").exists()

    resumed_trainer = MetaTrainer(with_output(config, tmp_path / "resumed"), params)
    resumed = resumed_trainer.train(resume=True)

    assert resumed.steps == reference.steps == params.meta_steps
    assert all(torch.equal(a, b) for a, b in zip(meta_params(resumed_trainer), meta_params(full)))
    assert resumed.best_step == reference.best_step
    assert resumed.best_metric == reference.best_metric
    assert resumed.validation == reference.validation
    assert resumed.test == reference.test
    best_full, best_resumed = saved_weights(tmp_path / "full"), saved_weights(tmp_path / "resumed")
    assert best_full.keys() == best_resumed.keys()
    assert all(torch.equal(best_full[k], best_resumed[k]) for k in best_full)


def test_kill_after_a_checkpoint_resumes_from_it(tiny_run, tmp_path):
    config, params = tiny_run  # checkpoint_every=2, eval_every=3
    trainer = MetaTrainer(config, params, callbacks=[StopAt(5, "interrupt")])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    state = torch.load(checkpoint_path(config.output_dir), weights_only=False)
    assert state["step"] == 4
    assert [h["step"] for h in state["history"]] == [3]
    # the checkpoint folder holds only the finished file, never a temporary one
    assert [p.name for p in checkpoint_path(config.output_dir).parent.iterdir()] == ["state.pt"]

    resumed = MetaTrainer(config, params)
    resumed.train(resume=True)
    assert resumed.start_step == 4


def test_resume_with_changed_params_is_refused(tiny_run):
    config, params = tiny_run
    MetaTrainer(config, params, callbacks=[StopAt(2, "should_stop")]).train()
    changed = dataclasses.replace(params, inner_lr=params.inner_lr * 2, k_support=3)
    with pytest.raises(ConfigError) as err:
        MetaTrainer(config, changed).train(resume=True)
    message = str(err.value)
    assert "inner_lr" in message and "k_support" in message
    assert config.output_dir in message


def test_resume_may_extend_meta_steps(tiny_run):
    config, params = tiny_run
    MetaTrainer(config, dataclasses.replace(params, meta_steps=4)).train()
    longer = MetaTrainer(config, params)
    result = longer.train(resume=True)
    assert longer.start_step == 4 and result.steps == params.meta_steps


def test_resume_without_checkpoint_starts_from_zero(tiny_run, caplog):
    config, params = tiny_run
    trainer = MetaTrainer(config, params)
    with caplog.at_level("WARNING", logger="kshot"):
        result = trainer.train(resume=True)
    assert trainer.start_step == 0 and result.steps == params.meta_steps
    assert "no checkpoint" in caplog.text
