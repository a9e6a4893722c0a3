"""Resumable checkpoints, written atomically (temporary file, then rename)."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import KshotError

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


class CheckpointError(KshotError):
    """A checkpoint file cannot be read as one (not written by kshot, or damaged)."""


def checkpoint_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def save_checkpoint(output_dir: str | Path, state: dict[str, Any]) -> Path:
    path = checkpoint_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    with os.fdopen(fd, "wb") as fh:
        torch.save(state, fh)
    os.replace(tmp, path)
    return path


def load_checkpoint(output_dir: str | Path) -> dict[str, Any] | None:
    path = checkpoint_path(output_dir)
    if not path.exists():
        return None
    # weights_only: a checkpoint is tensors, numbers, strings and containers of them. A pickle that
    # names any other object (a planted file, a crafted upload) is refused instead of executed.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} is not a kshot checkpoint (it holds objects other than tensors, numbers and strings): "
            f"{str(err)[:300]}. Delete it to start over, or resume from a checkpoint kshot wrote."
        ) from None
