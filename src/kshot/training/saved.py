"""What a saved kshot folder carries beside its weights: the params it was trained with, its label prior."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import Params
from ..errors import ModelError
from ..models import read_kshot_meta


def saved_params(model_dir: str | Path, overrides: dict[str, Any] | None = None) -> Params:
    """The params a model was trained with (from ``kshot.json``), with ``overrides`` applied.

    A plain Hugging Face checkpoint has none: it is adapted like the ``finetune`` baseline (reptile's
    inner loop with the defaults).
    """
    meta = read_kshot_meta(model_dir) or {}
    data = dict(meta.get("params", {}))
    data.update(overrides or {})
    return Params.from_dict(data)


def check_model_dir(model_dir: str | Path) -> None:
    """Fail early, naming the folder, when a saved model is not there."""
    if not Path(model_dir).exists():
        raise ModelError(
            f"Model folder {model_dir} does not exist. Give the output_dir of `kshot train` or of `kshot adapt`."
        )


def saved_label_prior(model_dir: str | Path, params: Params) -> np.ndarray | None:
    """The training tasks' label prior stored with a model trained with ``prior_calibration``."""
    prior = (read_kshot_meta(model_dir) or {}).get("label_prior")
    return np.asarray(prior, dtype=np.float64) if params.prior_calibration and prior is not None else None
