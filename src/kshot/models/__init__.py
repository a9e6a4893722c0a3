"""Models: loading any sequence classifier (default: bundled all-MiniLM-L6-v2) and saving with kshot metadata."""

from .loading import (
    default_model_path,
    load_model,
    load_tokenizer,
    model_label_names,
    read_kshot_meta,
    resolve_model_name,
)
from .saving import save_model

__all__ = [
    "default_model_path",
    "load_model",
    "load_tokenizer",
    "model_label_names",
    "read_kshot_meta",
    "resolve_model_name",
    "save_model",
]
