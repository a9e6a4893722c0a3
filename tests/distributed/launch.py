"""Launching kshot on 2 CPU processes (gloo) the way a user does, with a hard timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(
    args: list[str], home: Path, timeout: float = 120, num_processes: int = 2, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N ARGS`` on CPUs only.

    On a machine without GPUs ``--multi_gpu`` still starts N processes (through torch.distributed.run)
    and kshot joins them with gloo. ``HF_HOME`` points at ``home`` so that no user accelerate config is
    read. On timeout the whole process group is killed, so a hang fails the test instead of the CI.
    """
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *args,
    ]
    full_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HOME": str(home), **(env or {})}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(
            f"`{' '.join(cmd)}` did not finish within {timeout} s (hang?). Output:\n{out[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")
