"""Save a model as a standard Hugging Face folder plus ``kshot.json`` and a model card."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import __version__
from .card import model_card
from .loading import KSHOT_FILE


def save_model(
    model, tokenizer, out_dir: str | Path, meta: dict[str, Any], extra_files: dict[str, Any] | None = None
) -> Path:
    """Write ``save_pretrained`` output, ``kshot.json`` and ``README.md`` into ``out_dir``.

    Files are written to a temporary folder first and moved in one by one, ``kshot.json`` last, so a
    crash never leaves a folder that looks complete but is not. Other entries of ``out_dir`` (e.g.
    checkpoints) are left alone. ``extra_files`` maps file names to JSON-serialisable objects or to
    callables that write the file given its path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"kshot_version": __version__, **meta}
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".saving-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, value in (extra_files or {}).items():
            if callable(value):
                value(tmp / name)
            else:
                (tmp / name).write_text(json.dumps(value, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(model_card(meta), encoding="utf-8")
        (tmp / KSHOT_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        (out / KSHOT_FILE).unlink(missing_ok=True)
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == KSHOT_FILE):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
