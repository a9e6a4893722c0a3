"""Meta-training runs described by a JSON spec, run by every process of a launch (or in-process).

``python worker.py SPEC.json`` under ``accelerate launch``/torchrun runs each entry of
``spec["runs"]`` in order with :class:`kshot.training.MetaTrainer` and writes, per process,
``<out>/<name>.rank<k>.pt``: the final algorithm state and the evaluation results that process holds.
A run with ``"kill_main_at": n`` SIGKILLs the main process after outer step n; one with
``"stop_main_at": n`` sets ``should_stop`` there (on the main process only, like any callback).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from kshot.config import KshotConfig, Params
from kshot.errors import KshotError
from kshot.training import MetaTrainer, TrainerCallback
from kshot.training.setup import make_accelerator


class StopMainAt(TrainerCallback):
    """Asks to stop, as an early-stopping or cancel callback does; callbacks run on the main process only."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, metrics) -> None:
        if step == self.step:
            trainer.control.should_stop = True


class KillMainAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, metrics) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def run(spec: dict[str, Any], entry: dict[str, Any], out: Path, accelerator=None) -> dict[str, Any]:
    rank = accelerator.process_index if accelerator is not None else 0
    config = KshotConfig.from_dict({**spec["config"], "output_dir": entry["output_dir"]})
    own = entry.get("params_by_rank", {}).get(str(rank), {})  # to make processes disagree on purpose
    params = Params.from_dict({**spec["params"], **entry.get("params", {}), **own})
    callbacks = [KillMainAt(entry["kill_main_at"])] if "kill_main_at" in entry else []
    callbacks += [StopMainAt(entry["stop_main_at"])] if "stop_main_at" in entry else []
    trainer = MetaTrainer(config, params, callbacks=callbacks, accelerator=accelerator)
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = trainer.train(resume=entry.get("resume", False))
    except KshotError as err:
        # Every process raises the same error at the same point, so the next run can still start.
        (out / f"{entry['name']}.rank{rank}.err").write_text(str(err), encoding="utf-8")
        return {"error": str(err)}
    record = {
        "state": trainer.algorithm.state_dict(),
        "validation": result.validation,
        "test": result.test,
        "num_processes": trainer.accelerator.num_processes,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
    }
    torch.save(record, out / f"{entry['name']}.rank{rank}.pt")
    return record


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    accelerator = make_accelerator(Params.from_dict(spec["params"]))
    for entry in spec["runs"]:
        run(spec, entry, Path(spec["out"]), accelerator)


if __name__ == "__main__":
    main(sys.argv[1])
