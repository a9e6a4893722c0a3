"""Building a run's pieces from its config: tasks, episode samplers, the accelerator, the algorithm."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..algorithms import MetaAlgorithm, get_algorithm
from ..config import KshotConfig, Params
from ..data import EpisodeSampler, FixedTask, TaskCollection, load_tasks, tokenize_collection
from ..errors import ConfigError


@dataclass
class RunTasks:
    collection: TaskCollection
    train: list
    sampler: EpisodeSampler | None
    validation: list[FixedTask]
    test: list[FixedTask]


def build_tasks(config: KshotConfig, params: Params, tokenizer, with_training: bool = True) -> RunTasks:
    """Load, check and tokenize everything once; evaluation tasks are sampled once, deterministically.

    Without training (``with_training=False``), only the test tasks are built and tokenized: ARSC's 12
    target tasks are 9,000 texts of its 64,000."""
    collection = load_tasks(config.data)
    tokenize_collection(collection, tokenizer, params.max_length, config.data.cache_dir, test_only=not with_training)
    label_names = collection.label_names
    sampler = EpisodeSampler(collection.train, params, label_names, stream="train") if with_training else None
    validation = list(collection.validation_fixed) if with_training else []
    if collection.validation and with_training:
        validation += EpisodeSampler(
            collection.validation, params, label_names, stream="validation", skip_small=collection.validation_is_default
        ).fixed_tasks(params.eval_tasks, config.data.eval_query_size)
    test = list(collection.test)
    if collection.test_pool:
        count = len(collection.test_pool) * config.data.eval_episodes
        test += EpisodeSampler(collection.test_pool, params, label_names, stream="test").fixed_tasks(
            count, config.data.eval_query_size
        )
    return RunTasks(collection, collection.train, sampler, validation, test)


def make_accelerator(params: Params):
    """The run's Accelerator. Under a distributed launcher it joins the process group (gloo on CPU).

    ``params.mixed_precision`` 'no' defers to the launcher (``accelerate launch --mixed_precision``,
    ``accelerate config``), which itself defaults to full precision; 'bf16'/'fp16' always win.
    """
    from accelerate import Accelerator

    from .distributed import launched_world_size, needs_cpu_backend

    precision = params.mixed_precision
    if precision == "no":
        precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()  # set by `accelerate launch`
    accelerator = Accelerator(mixed_precision=precision, cpu=needs_cpu_backend())
    world = launched_world_size()
    if accelerator.num_processes != world:
        raise ConfigError(
            f"The launcher started {world} processes (WORLD_SIZE={world}) but accelerate set up "
            f"{accelerator.num_processes}: each would train alone. On a machine without GPUs, launch with "
            "`accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`, "
            "or set ACCELERATE_USE_CPU=1."
        )
    return accelerator


def build_algorithm(model, params: Params, accelerator, tokenizer) -> MetaAlgorithm:
    if params.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if params.dropout is not None:
        set_dropout(model, params.dropout)
    if params.attention_dropout is not None and not set_dropout(model, params.attention_dropout, attention_only=True):
        raise ConfigError(
            f"params.attention_dropout is {params.attention_dropout}, but {type(model).__name__} has no dropout layer "
            "inside a module whose class name ends in 'Attention'. Set it to null and use params.dropout."
        )
    if params.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    model.to(accelerator.device if accelerator is not None else "cpu")
    cls = get_algorithm(params.algorithm)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return cls(model, params, accelerator, pad)


def set_dropout(model, p: float, attention_only: bool = False) -> int:
    """Set every dropout layer of ``model`` to ``p``, attention dropout included (Hugging Face attention
    reads its module's ``dropout.p``), or with ``attention_only`` the attention dropout alone: the dropout
    layers held by a module whose class name ends in 'Attention' (BertSelfAttention,
    DistilBERT's MultiHeadSelfAttention, ...). The model's config is left alone, so a saved model keeps
    its own. Returns how many layers were set."""
    import torch

    count = 0
    for parent in model.modules():
        if attention_only and not type(parent).__name__.endswith("Attention"):
            continue
        for module in parent.children():
            if isinstance(module, torch.nn.Dropout):
                module.p = p
                count += 1
    return count


def _enable_gradient_checkpointing(model) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"params.gradient_checkpointing is true, but {type(model).__name__} does not support gradient "
            "checkpointing. Set it to false or use another model."
        )
    # transformers 5 names it activation checkpointing (the old name warns); 4.x has only the old name.
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
