"""An ensemble of meta-trained models (e.g. the three seeds of a config) on the few-shot protocol.

Per task, every model adapts on the support set as `kshot evaluate` does (same seeds, same steps) and
scores the query set; the ensemble predicts the class of highest mean probability. Each model's own
scores are printed too, so the ensemble's gain is read against its members in one run. Evaluation
costs one `kshot evaluate` per model, which is why the ensemble is reported apart from the headline.

    .venv/bin/python benchmarks/ensemble.py outputs/arsc outputs/arsc-anil-43 outputs/arsc-anil-44 \
        -c configs/arsc/config.yaml --json ensemble.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from kshot.config import load_config
from kshot.models import load_model, load_tokenizer
from kshot.training.evaluation import adapted_logits, score_task, task_classes
from kshot.training.metrics import format_table, summarize
from kshot.training.saved import saved_params
from kshot.training.setup import build_algorithm, build_tasks


def query_probabilities(model_dir: str, tasks, params) -> dict[str, np.ndarray]:
    """Per task, probabilities over the task's own classes of ``model_dir`` adapted as `kshot evaluate` adapts
    (one column per label; the other labels' columns stay 0)."""
    tokenizer = load_tokenizer(model_dir)
    algorithm = build_algorithm(load_model(model_dir, tasks.collection.label_names), params, None, tokenizer)
    algorithm.load_pretrained(model_dir)
    out = {}
    for task in tasks.test:
        logits = torch.from_numpy(
            adapted_logits(algorithm, task, params.eval_inner_steps, params.eval_batch_size, params.seed)
        )
        classes = task_classes(task)
        probs = np.zeros(tuple(logits.shape), dtype=np.float32)
        probs[:, classes] = torch.softmax(logits[:, classes].float(), dim=-1).numpy()
        out[task.name] = probs
    return out


def scores(tasks, probs: dict[str, np.ndarray]) -> dict:
    per_task = {task.name: score_task(task, probs[task.name]) for task in tasks.test}
    return {"tasks": per_task, "mean": summarize(per_task)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="Folders saved by `kshot train`.")
    ap.add_argument("-c", "--config", required=True, help="config.yaml naming the test tasks.")
    ap.add_argument("--json", help="Write every member's and the ensemble's scores here.")
    args = ap.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = load_config(args.config)
    first = saved_params(args.models[0])
    tasks = build_tasks(config, first, load_tokenizer(args.models[0]), with_training=False)  # tokenized once
    members, total, t0 = {}, None, time.perf_counter()
    for model_dir in args.models:
        params = saved_params(model_dir)
        if params.max_length != first.max_length:
            raise SystemExit(
                f"{model_dir} truncates at {params.max_length} tokens, {args.models[0]} at {first.max_length}:"
                " ensemble models tokenized alike."
            )
        probs = query_probabilities(model_dir, tasks, params)
        members[model_dir] = scores(tasks, probs)
        print(format_table(members[model_dir], model_dir))
        total = probs if total is None else {k: total[k] + probs[k] for k in total}
    ensemble = scores(tasks, total)
    result = {"members": members, "ensemble": ensemble, "seconds": time.perf_counter() - t0}
    print(format_table(ensemble, f"ensemble of {len(args.models)} (mean probability)"))
    print(f"adapting and scoring with {len(args.models)} models took {result['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
