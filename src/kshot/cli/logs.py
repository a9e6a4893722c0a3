"""Logging set-up, done by the command line (never at import)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FILE = "running_logs.log"


def setup_logging(log_dir: str | None = "logs", level: str = "INFO", main_process: bool = True) -> None:
    root = logging.getLogger("kshot")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    if not main_process:
        root.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(Path(log_dir) / LOG_FILE, encoding="utf-8")
        file.setFormatter(fmt)
        root.addHandler(file)
    root.propagate = False
    # Library progress bars (weight shards, dataset generation) would interleave with ours.
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
