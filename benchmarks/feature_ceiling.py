"""How far a trained model's features can go on the few-shot tasks, whatever the head does.

Per test task of a 2-way config, four accuracies from one pass of the body over the query set:

- ``adapted``: the few-shot protocol, as `kshot evaluate` scores it (adapt on the support set);
- ``fixed``: the meta-learned head with no adaptation at all;
- ``best_threshold``: the meta-learned head's direction with the best threshold for this query set,
  chosen with the query labels (the ceiling of any rule that only moves the decision threshold);
- ``query_cv``: a logistic regression trained on the query set's own features and labels, scored by
  5-fold cross-validation, with the best of four regularisation strengths (hundreds of labelled
  examples of the task instead of ten: roughly the ceiling of any linear head on these features).

When ``query_cv`` is not far above ``adapted``, a better head or adaptation rule cannot help much:
the body's features are what limits the score. The oracle columns read the query labels, so they are
a diagnosis, never a way to choose hyperparameters.

    .venv/bin/python benchmarks/feature_ceiling.py outputs/tune -c configs/arsc/tune.yaml --json ceiling.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from kshot.algorithms.functional import head_names
from kshot.config import load_config
from kshot.data import FixedTask
from kshot.data.tokenization import length_sorted_batches
from kshot.models import load_model, load_tokenizer
from kshot.training.evaluation import adapted_logits, score_task, task_classes
from kshot.training.saved import saved_params
from kshot.training.setup import build_algorithm, build_tasks, make_accelerator

COLUMNS = ("adapted", "fixed", "best_threshold", "query_cv")


def linear_head(model) -> torch.nn.Linear:
    """The model's classification head, which must be one Linear layer fed a feature vector."""
    names = {n.split(".")[0] for n in head_names(model)}
    head = model.get_submodule(names.pop()) if len(names) == 1 else None
    if not isinstance(head, torch.nn.Linear):
        raise SystemExit(
            f"{type(model).__name__}'s head ({sorted(head_names(model))}) is not one Linear layer:"
            " its input is not a feature vector."
        )
    return head


@torch.no_grad()
def head_features(model, task: FixedTask, batch_size: int, pad_token_id: int) -> np.ndarray:
    """What the model's head is fed for every query example, in eval mode."""
    head = linear_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    model.eval()
    out = np.zeros((len(task.query), head.in_features), dtype=np.float32)
    try:
        for idx, batch in length_sorted_batches(task.query, batch_size, pad_token_id):
            batch.pop("labels")
            captured.clear()
            model(**{k: v.to(model.device) for k, v in batch.items()})
            out[idx] = captured[0].float().numpy()
    finally:
        hook.remove()
    return out


def logistic_regression_cv(x: np.ndarray, y: np.ndarray, folds: int = 5, c: float = 1.0, seed: int = 0) -> float:
    """Accuracy of L2-regularised logistic regression (penalty ‖w‖²/2C, features standardised) by k-fold CV."""
    order = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        xt = torch.from_numpy((x[train] - mean) / std).double()
        yt = torch.from_numpy(y[train]).double()
        w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            z = xt @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="sum") + w[:-1].pow(
                2
            ).sum() / (2 * c)
            loss.backward()
            return loss

        opt.step(closure)
        z = torch.from_numpy((x[test] - mean) / std).double() @ w[:-1].detach() + w[-1].detach()
        correct += int(((z > 0).numpy().astype(int) == y[test]).sum())
    return correct / len(y)


def best_threshold_accuracy(score: np.ndarray, y: np.ndarray) -> float:
    """The best accuracy of ``score > t`` over every threshold t (all-positive and all-negative included)."""
    order = np.argsort(score)
    ys = y[order]
    # Threshold after the i-th lowest score: the i lowest are called negative, the rest positive.
    negatives_below = np.concatenate([[0], np.cumsum(ys == 0)])
    positives_above = (ys == 1).sum() - np.concatenate([[0], np.cumsum(ys == 1)])
    return float((negatives_below + positives_above).max() / len(y))


def task_row(algorithm, task: FixedTask, params, pad_token_id: int) -> dict[str, float]:
    classes = task_classes(task)
    if len(classes) != 2:
        raise SystemExit(f"{task.name} has {len(classes)} classes; the threshold ceiling needs 2-way tasks.")
    y = (task.query.labels == classes[1]).astype(int)
    adapted = score_task(
        task, adapted_logits(algorithm, task, params.eval_inner_steps, params.eval_batch_size, params.seed)
    )["accuracy"]
    model = algorithm.model
    x = head_features(model, task, params.eval_batch_size, pad_token_id)
    head = linear_head(model)
    weight = head.weight.detach().float().cpu().numpy()
    bias = head.bias.detach().float().cpu().numpy() if head.bias is not None else np.zeros(weight.shape[0], np.float32)
    margin = x @ (weight[classes[1]] - weight[classes[0]]) + (bias[classes[1]] - bias[classes[0]])
    return {
        "adapted": adapted,
        "fixed": float(((margin > 0).astype(int) == y).mean()),
        "best_threshold": best_threshold_accuracy(margin, y),
        "query_cv": max(logistic_regression_cv(x, y, c=c) for c in (0.001, 0.01, 0.1, 1.0)),
        "positive_share": float(y.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="A folder saved by `kshot train`.")
    ap.add_argument("-c", "--config", required=True, help="config.yaml naming the test tasks (2-way).")
    ap.add_argument("--json", help="Write the per-task table here.")
    args = ap.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    params = saved_params(args.model)
    tokenizer = load_tokenizer(args.model)
    tasks = build_tasks(load_config(args.config), params, tokenizer, with_training=False)
    # float32 on the run's device (a GPU where there is one): the ceiling of the features, not of a precision.
    params = dataclasses.replace(params, mixed_precision="no")
    accelerator = make_accelerator(params, training=False)
    algorithm = build_algorithm(load_model(args.model, tasks.collection.label_names), params, accelerator, tokenizer)
    algorithm.load_pretrained(args.model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = {task.name: task_row(algorithm, task, params, pad) for task in tasks.test}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in (*COLUMNS, "positive_share")}
    print(f"{'task':<28} {'positive':>8} " + " ".join(f"{c:>14}" for c in COLUMNS))
    for name, r in [*rows.items(), ("mean", mean)]:
        print(f"{name:<28} {100 * r['positive_share']:8.2f} " + " ".join(f"{100 * r[c]:14.2f}" for c in COLUMNS))
    print(f"took {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "tasks": rows, "mean": mean}, fh, indent=2)


if __name__ == "__main__":
    main()
