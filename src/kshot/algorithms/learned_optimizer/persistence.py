"""Saving a learned optimizer beside a model, and loading it (also into another model of the family)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from ...errors import ConfigError, ModelError
from .network import LearnedOptimizer, LoptConfig

WEIGHTS_FILE = "learned_optimizer.safetensors"
CONFIG_FILE = "learned_optimizer.json"


def lopt_files(lopt: LearnedOptimizer) -> dict:
    """``extra_files`` for :func:`kshot.models.save_model`: the weights and the JSON config."""

    def write_weights(path: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in lopt.state_dict().items()}, str(path))

    return {
        WEIGHTS_FILE: write_weights,
        CONFIG_FILE: {"config": lopt.config.to_dict(), "tensor_names": list(lopt.scale_names)},
    }


def has_lopt(folder: str | Path) -> bool:
    return (Path(folder) / WEIGHTS_FILE).is_file() and (Path(folder) / CONFIG_FILE).is_file()


def load_lopt(folder: str | Path) -> LearnedOptimizer:
    """The learned optimizer saved in ``folder`` (on the CPU)."""
    folder = Path(folder)
    if not has_lopt(folder):
        raise ModelError(
            f"No learned optimizer in {folder} (expected {WEIGHTS_FILE} and {CONFIG_FILE}). Give the folder of a "
            "model trained with algorithm learned_optimizer, e.g. with params.lopt_path."
        )
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        config = LoptConfig.from_dict(meta["config"])
        weights = load_file(str(folder / WEIGHTS_FILE))
    except (OSError, KeyError, TypeError, json.JSONDecodeError, ConfigError) as err:
        raise ModelError(f"{folder / CONFIG_FILE} or {WEIGHTS_FILE} is unreadable ({err}); re-save the model.") from err
    lopt = LearnedOptimizer(config, meta.get("tensor_names") or [])
    try:
        lopt.load_state_dict(weights)
    except RuntimeError as err:
        raise ModelError(f"{folder / WEIGHTS_FILE} does not match {CONFIG_FILE}: {err}") from err
    return lopt


def lopt_state(lopt: LearnedOptimizer) -> dict:
    """The learned optimizer as plain data (for training checkpoints)."""
    return {
        "config": lopt.config.to_dict(),
        "tensor_names": list(lopt.scale_names),
        "weights": {k: v.detach().cpu().clone() for k, v in lopt.state_dict().items()},
    }


def lopt_from_state(state: dict) -> LearnedOptimizer:
    lopt = LearnedOptimizer(LoptConfig.from_dict(state["config"]), list(state["tensor_names"]))
    lopt.load_state_dict(state["weights"])
    return lopt
