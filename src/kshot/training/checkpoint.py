"""Resumable checkpoints, written atomically (temporary file, then rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


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
    return torch.load(path, map_location="cpu", weights_only=False)
