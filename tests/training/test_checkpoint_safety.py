"""Checkpoints load with ``weights_only=True``: every algorithm's state resumes, and a planted pickle never runs."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from kshot.algorithms import available
from kshot.training import MetaTrainer
from kshot.training.checkpoint import CheckpointError, checkpoint_path, load_checkpoint


class _Payload:
    """Unpickling this calls ``open(marker, 'w')``: what a planted ``state.pt`` would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("algorithm", available())
def test_every_algorithms_checkpoint_loads_without_pickle(tiny_run, tmp_path, algorithm):
    config, params = tiny_run
    config = dataclasses.replace(config, output_dir=str(tmp_path / "out"))
    params = dataclasses.replace(
        params, algorithm=algorithm, meta_steps=2, eval_every=0, checkpoint_every=1, test_after_train=False
    )
    MetaTrainer(config, params).train()
    state = load_checkpoint(config.output_dir)
    assert state is not None and state["step"] == 2
    # Resuming reads the same file the same way and continues from step 2.
    result = MetaTrainer(config, dataclasses.replace(params, meta_steps=3)).train(resume=True)
    assert result.steps == 3


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = checkpoint_path(tmp_path / "run")
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"step": 1, "algorithm": _Payload(str(marker))}, protocol=protocol))
    with pytest.raises(CheckpointError, match="not a kshot checkpoint"):
        load_checkpoint(tmp_path / "run")
    assert not marker.exists()


def test_a_planted_torch_save_file_is_refused(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    path = checkpoint_path(tmp_path / "run")
    path.parent.mkdir(parents=True)
    torch.save({"step": 1, "algorithm": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "run")
    assert not marker.exists()
