"""What multi-process meta-training needs beyond accelerate: the split of a meta-batch across
processes, the main process's stop decision sent to all, and a start-up check that every process is
about to run the same thing.

Processes never exchange tasks or data, only the outer update (a sum over processes) and evaluation
metrics; so they must start from the same config, data, model and checkpoint. A difference there
would not crash: it would silently average updates of different runs. :func:`verify_processes_agree`
turns it into an error at start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def launched_world_size() -> int:
    """The number of processes a launcher (torchrun, ``accelerate launch``, mpirun) started; 1 if none."""
    for var in _WORLD_SIZE_VARS:
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def launched_rank() -> int:
    """This process's rank under a launcher (0 without one), read before accelerate is set up."""
    for var in _RANK_VARS:
        if os.environ.get(var):
            return int(os.environ[var])
    return 0


def needs_cpu_backend() -> bool:
    """True for a multi-process launch on a machine with no device that torch.distributed can pair
    with: accelerate then needs ``cpu=True`` to form a gloo group instead of N lone processes."""
    if launched_world_size() == 1:
        return False
    current = getattr(torch, "accelerator", None)
    device = current.current_accelerator() if current is not None else ("cuda" if torch.cuda.is_available() else None)
    return device is None or getattr(device, "type", device) == "mps"


def local_task_indices(meta_batch_size: int, process_index: int, num_processes: int) -> range:
    """This process's share of every meta-batch. ``meta_batch_size`` stays the total per outer step."""
    if meta_batch_size % num_processes:
        raise ConfigError(
            f"params.meta_batch_size={meta_batch_size} is not divisible by the number of processes "
            f"({num_processes}): every process must adapt the same number of tasks per outer step. "
            f"Use a meta_batch_size that is a multiple of {num_processes}, or launch "
            f"{'/'.join(str(n) for n in _divisors(meta_batch_size))} processes."
        )
    return range(process_index, meta_batch_size, num_processes)


def main_process_flag(accelerator, flag: bool) -> bool:
    """The main process's ``flag`` on every process (one tiny broadcast; no-op with one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return flag
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([int(flag)], device=accelerator.device), from_process=0).item())


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _digest(parts: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(part.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
        elif isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).data)
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:16]


def _walk(obj: Any) -> Iterable[Any]:
    """Leaves of nested dicts/lists in a stable order (state dicts, optimizer states)."""
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield key
            yield from _walk(obj[key])
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk(item)
    else:
        yield obj


def _task_parts(tasks) -> Iterable[Any]:
    for task in tasks:
        yield task.name
        yield task.labels
        for ids in task.input_ids or []:
            yield ids


def run_fingerprint(config, params, run_tasks, algorithm_state: dict[str, Any], start_step: int) -> dict[str, Any]:
    """What must be equal on every process, each part reduced to a short digest."""
    fixed = list(run_tasks.validation) + list(run_tasks.test)
    return {
        "config and params": _digest([json.dumps([config.to_dict(), params.to_dict()], sort_keys=True, default=str)]),
        "training data (texts after tokenization, labels)": _digest(_task_parts(run_tasks.train)),
        "evaluation tasks": _digest(_task_parts([t.support for t in fixed] + [t.query for t in fixed])),
        "meta-parameters and outer optimizer state": _digest(_walk(algorithm_state)),
        "starting step": start_step,
    }


def verify_processes_agree(accelerator, fingerprint: dict[str, Any]) -> None:
    """Raise the same :class:`ConfigError` on every process if any process differs from the main one."""
    if accelerator is None or accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    every = gather_object([fingerprint])
    main = every[0]
    differ = [(key, rank, fp[key]) for rank, fp in enumerate(every) for key in main if fp[key] != main[key]]
    if differ:
        what = "; ".join(
            f"{key} of process {rank} ({value}) differs from the main process's ({main[key]})"
            for key, rank, value in differ
        )
        raise ConfigError(
            f"The {len(every)} processes would not run the same meta-training: {what}. Every process must "
            "see the same config, params, data and model files (and, with --resume, the same checkpoint "
            "in output_dir: on several machines put output_dir on a shared file system)."
        )
