"""MetaTrainer: the outer loop, from tasks to a saved, evaluated meta-learned model."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import KshotConfig, Params
from ..errors import ConfigError
from ..models import load_tokenizer, resolve_model_name, save_model
from .calibration import label_prior
from .callbacks import CallbackList, LoggingCallback, ProgressCallback, TrainerCallback, TrainerControl
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import local_task_indices, main_process_flag, run_fingerprint, verify_processes_agree
from .evaluation import evaluate_tasks
from .setup import build_algorithm, build_tasks, load_run_model, make_accelerator

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    best_step: int
    best_metric: float | None
    validation: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    train_seconds: float = 0.0
    stopped_early: bool = False


class MetaTrainer:
    """Meta-trains ``params.algorithm`` on the tasks of ``config`` with accelerate.

    >>> result = MetaTrainer(load_config("config.yaml"), load_params("params.yaml")).train()
    """

    def __init__(
        self, config: KshotConfig, params: Params, callbacks: list[TrainerCallback] | None = None, accelerator=None
    ):
        self.config = config
        self.params = params
        self.accelerator = accelerator or make_accelerator(params)
        self.control = TrainerControl()
        default = [LoggingCallback()] + ([ProgressCallback()] if config.logging.progress_bar else [])
        self.callbacks = CallbackList(default + list(callbacks or []))
        self.output_dir = Path(config.output_dir)
        self.start_step = 0

    # ------------------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> TrainResult:
        p, main = self.params, self.accelerator.is_main_process
        # Each process runs its share of the meta-batch; the union of episodes per step does not
        # depend on the number of processes, because episodes are drawn by (seed, step, index).
        local = local_task_indices(p.meta_batch_size, self.accelerator.process_index, self.accelerator.num_processes)
        self._setup()
        self._restore(resume)
        if self.accelerator.num_processes > 1:
            state = self.algorithm.state_dict()
            verify_processes_agree(
                self.accelerator, run_fingerprint(self.config, p, self.tasks, state, self.start_step)
            )
        if main:
            self.callbacks.on_train_begin(self)
        t0 = time.perf_counter() - self.train_seconds
        step = self.start_step
        while step < p.meta_steps and not self.control.should_stop:
            episodes = self.tasks.sampler.meta_batch(step, local)
            metrics = self.algorithm.meta_step(episodes, step, p.meta_batch_size, self._lr_scale(step))
            step += 1
            if not all(math.isfinite(v) for v in metrics.values()):
                logger.warning("step %d: non-finite metrics %s", step, metrics)
            if main:
                self.callbacks.on_step_end(self, step, metrics)
            if p.eval_every and step % p.eval_every == 0 and self.tasks.validation:
                self._validate(step)
            if (p.checkpoint_every and step % p.checkpoint_every == 0) or (p.eval_every and step % p.eval_every == 0):
                self._checkpoint(step, time.perf_counter() - t0)
            # Callbacks run on the main process only; its decision to stop must reach every process,
            # or the others would wait forever in the next step's collective.
            self.control.should_stop = main_process_flag(self.accelerator, self.control.should_stop)
        self.train_seconds = time.perf_counter() - t0
        stopped = step < p.meta_steps
        if not stopped and self.tasks.validation and (not p.eval_every or step % p.eval_every):
            self._validate(step)
        if not self.tasks.validation or self.best_state is None:
            self._keep_best(step, None)
        if step != self.last_checkpoint_step:
            self._checkpoint(step, self.train_seconds)
        result = TrainResult(
            output_dir=str(self.output_dir),
            steps=step,
            best_step=self.best_step,
            best_metric=self.best_metric,
            validation=self.history,
            train_seconds=self.train_seconds,
            stopped_early=stopped,
        )
        if p.test_after_train and self.tasks.test and not stopped:
            result.test = self.test()
            self._save_best_model(extra_results={"test": result.test})
        if self.accelerator.is_main_process:
            self.callbacks.on_train_end(self, result)
        return result

    def test(self) -> dict[str, Any]:
        """Evaluate the best meta-parameters on the test tasks."""
        current = copy.deepcopy(self.algorithm.state_dict())
        self.algorithm.load_state_dict(self.best_state)
        results = evaluate_tasks(
            self.algorithm,
            self.tasks.test,
            self.params.eval_inner_steps,
            self.params.eval_batch_size,
            self.params.seed,
            self.accelerator,
            label_prior=self.label_prior,
        )
        self.algorithm.load_state_dict(current)
        if self.accelerator.is_main_process:
            self.callbacks.on_evaluate(self, self.best_step, "test", results)
        return results

    # ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        torch.manual_seed(self.params.seed)  # the fresh classifier head's initialisation
        name = resolve_model_name(self.config.model.name_or_path)
        self.tokenizer = load_tokenizer(name, self.config.model.revision)
        self.tasks = build_tasks(self.config, self.params, self.tokenizer)
        self.label_names = self.tasks.collection.label_names
        self.new_classes = self.tasks.collection.new_classes
        if self.new_classes and self.params.prior_calibration:
            raise ConfigError(
                "params.prior_calibration moves predictions to the training tasks' label prior, but with new "
                "classes (data.tasks classes) no test class has a training prior. Set it to false."
            )
        # Stored with every model, so that `kshot evaluate --set params.prior_calibration=true` can use it.
        self.train_prior = None if self.new_classes else label_prior(self.tasks.train, len(self.label_names))
        self.label_prior = self.train_prior if self.params.prior_calibration else None
        model = load_run_model(
            name,
            self.label_names,
            self.params,
            new_classes=self.new_classes,
            pooling=self.config.model.pooling,
            revision=self.config.model.revision,
        )
        self.algorithm = build_algorithm(model, self.params, self.accelerator, self.tokenizer)
        self.base_model = name
        self.best_state, self.best_metric, self.best_step = None, None, 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.last_checkpoint_step = -1

    def _restore(self, resume: bool) -> None:
        state = load_checkpoint(self.output_dir) if resume else None
        if resume and state is None:
            logger.warning("--resume: no checkpoint in %s; starting from step 0.", self.output_dir)
        if state is None:
            self.start_step = 0
            return
        saved = dict(state["params"])
        current = self.params.to_dict()
        changed = [k for k in current if k != "meta_steps" and saved.get(k) != current[k]]
        if changed:
            raise ConfigError(
                f"Cannot resume from {self.output_dir}: params {', '.join(changed)} differ from the checkpoint's "
                f"({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}). Use the same params, or another output_dir."
            )
        self.algorithm.load_state_dict(state["algorithm"])
        self.best_state, self.best_metric, self.best_step = (
            state["best_state"],
            state["best_metric"],
            state["best_step"],
        )
        self.history = state["history"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.start_step = state["step"]
        logger.info("Resumed from %s at step %d.", self.output_dir, self.start_step)

    def _lr_scale(self, step: int) -> float:
        if self.params.outer_lr_schedule == "linear":
            return 1.0 - step / self.params.meta_steps
        return 1.0

    def _validate(self, step: int) -> None:
        p = self.params
        results = evaluate_tasks(
            self.algorithm,
            self.tasks.validation,
            p.eval_inner_steps,
            p.eval_batch_size,
            p.seed,
            self.accelerator,
            label_prior=self.label_prior,
        )
        self.history.append({"step": step, **results})
        if self.accelerator.is_main_process:
            self.callbacks.on_evaluate(self, step, "validation", results)
        metric = results["mean"][p.select_metric]
        if self.best_metric is None or metric > self.best_metric:
            self._keep_best(step, metric, validation=results)

    def _keep_best(self, step: int, metric: float | None, validation: dict | None = None) -> None:
        self.best_state = copy.deepcopy(
            {k: v for k, v in self.algorithm.state_dict().items() if k != "outer_optimizer"}
        )
        self.best_metric, self.best_step = metric, step
        self._save_best_model(extra_results={"validation": validation} if validation else {})

    def _save_best_model(self, extra_results: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            current = copy.deepcopy(self.algorithm.state_dict())
            self.algorithm.load_state_dict(self.best_state)
            self._results = {**getattr(self, "_results", {}), **extra_results}
            meta = {
                "algorithm": self.params.algorithm,
                "base_model": self.base_model,
                "label_names": self.label_names,
                "label_prior": None if self.train_prior is None else self.train_prior.tolist(),
                "new_classes": self.new_classes,
                "step": self.best_step,
                "config": self.config.to_dict(),
                "params": self.params.to_dict(),
                "results": self._results,
            }
            note = self.algorithm.usage_note(adapted=False)
            if note:
                meta["usage"] = note
            model = self.accelerator.unwrap_model(self.algorithm.export_model())
            save_model(model, self.tokenizer, self.output_dir, meta, self.algorithm.extra_files())
            self.algorithm.load_state_dict(current)
            self.callbacks.on_save(self, self.best_step, str(self.output_dir), "best model")
        self.accelerator.wait_for_everyone()

    def _checkpoint(self, step: int, seconds: float) -> None:
        if self.accelerator.is_main_process:
            state = {
                "step": step,
                "algorithm": self.algorithm.state_dict(),
                "best_state": self.best_state,
                "best_metric": self.best_metric,
                "best_step": self.best_step,
                "history": self.history,
                "train_seconds": seconds,
                "params": self.params.to_dict(),
                "config": self.config.to_dict(),
            }
            path = save_checkpoint(self.output_dir, state)
            self.callbacks.on_save(self, step, str(path), "checkpoint")
        self.last_checkpoint_step = step
        self.accelerator.wait_for_everyone()
