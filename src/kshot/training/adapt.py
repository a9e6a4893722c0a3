"""Adapting a saved model to a user's few labelled examples, saved as a standard Hugging Face folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algorithms.base import is_new_class_model
from ..data import TaskExamples
from ..data.tokenization import tokenize_examples
from ..data.user_files import read_labelled_file
from ..errors import shown
from ..models import load_model, load_tokenizer, model_label_names, read_kshot_meta, save_model
from .calibration import fold_into_head, prior_shift
from .saved import check_model_dir, saved_label_prior, saved_params
from .setup import build_algorithm, load_run_model, make_accelerator

logger = logging.getLogger(__name__)


def adapt_model(
    model_dir: str | Path,
    support_file: str | Path,
    out_dir: str | Path,
    steps: int | None = None,
    params_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Adapt a saved model to a few labelled examples and save a standard Hugging Face folder.

    When the examples' labels are the model's own, its meta-learned head is kept. Otherwise (new
    labels, or a model meta-trained for new classes) the task's head starts by the algorithm's rule
    for new classes (``params.new_class_head``, prototypes by default; see algorithms/heads.py), and
    the saved folder's ``id2label`` holds the user's label names."""
    check_model_dir(model_dir)
    texts, labels = read_labelled_file(support_file)
    params = saved_params(model_dir, params_overrides)
    accelerator = make_accelerator(params, training=False)
    tokenizer = load_tokenizer(str(model_dir))
    torch.manual_seed(params.seed)
    probe = load_model(str(model_dir))
    known = model_label_names(probe)
    user = sorted(set(labels))
    new_classes = is_new_class_model(probe) or not set(user) <= set(known)
    if new_classes:
        if not is_new_class_model(probe):
            logger.warning(
                "Labels %s are not the model's %s: the head starts from the %s of these examples (new classes).",
                shown(user, 200),
                shown(known, 200),
                params.new_class_head,
            )
        label_names = user
        model = load_run_model(str(model_dir), label_names, params, new_classes=True)
    else:
        label_names, model = known, probe
    ids = {n: i for i, n in enumerate(label_names)}
    support = TaskExamples(
        name="support",
        domain="user",
        texts=texts,
        labels=np.array([ids[lab] for lab in labels]),
        source=str(support_file),
        label_names=list(label_names),
    )
    tokenize_examples(support, tokenizer, params.max_length)
    if params.label_names_as_support:
        support = support.with_class_names()
    algorithm = build_algorithm(model, params, accelerator, tokenizer)
    algorithm.load_pretrained(str(model_dir))
    n_steps = params.eval_inner_steps if steps is None else steps
    stats = algorithm.adapt(support, n_steps, seed=params.seed)
    meta_in = read_kshot_meta(model_dir) or {}
    meta = {
        "algorithm": params.algorithm,
        "base_model": str(model_dir),
        "adapted_on": str(support_file),
        "adapt_steps": n_steps,
        "label_names": label_names,
        "params": params.to_dict(),
        "config": meta_in.get("config", {}),
        "title": "kshot adapted text classifier",
    }
    note = algorithm.usage_note(adapted=True)
    if note:
        meta["usage"] = note
    model_out = accelerator.unwrap_model(algorithm.export_model(adapted=True))
    prior = saved_label_prior(model_dir, params)
    if prior is not None and not new_classes:
        classes = np.arange(len(label_names))
        if fold_into_head(model_out, prior_shift(prior, support.labels, classes)):
            meta["label_prior"] = prior.tolist()
            meta["calibrated"] = "the training tasks' label prior is folded into the classifier bias"
        else:
            logger.warning("This model has no linear head to fold the label prior into; predictions are uncalibrated.")
    save_model(model_out, tokenizer, out_dir, meta, algorithm.extra_files())
    return {"out_dir": str(out_dir), "labels": label_names, "steps": n_steps, **stats}
