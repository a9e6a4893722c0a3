"""Run `kshot` commands in one fresh process and check that none of them imported torch or transformers
(seconds to import: commands that only read the store or a config must not wait for them)."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import json, sys
from kshot.cli.main import main
for argv, code in json.loads(sys.argv[1]):
    sys.argv = ["kshot", *argv]
    try:
        main()
    except SystemExit as stop:
        assert (stop.code or 0) == code, (argv, stop.code)
    assert "torch" not in sys.modules and "transformers" not in sys.modules, argv
"""


def run_without_torch(commands: list[tuple[list[str], int]], cwd=None) -> subprocess.CompletedProcess:
    """``commands``: (arguments after `kshot`, expected exit code) pairs, run in order."""
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(commands)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
