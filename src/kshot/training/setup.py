"""Building a run's pieces from its config: tasks, episode samplers, the accelerator, the algorithm."""

from __future__ import annotations

from dataclasses import dataclass

from ..algorithms import MetaAlgorithm, get_algorithm
from ..config import KshotConfig, Params
from ..data import EpisodeSampler, FixedTask, TaskCollection, load_tasks, tokenize_collection


@dataclass
class RunTasks:
    collection: TaskCollection
    train: list
    sampler: EpisodeSampler | None
    validation: list[FixedTask]
    test: list[FixedTask]


def build_tasks(config: KshotConfig, params: Params, tokenizer, with_training: bool = True) -> RunTasks:
    """Load, check and tokenize everything once; evaluation tasks are sampled once, deterministically."""
    collection = load_tasks(config.data)
    tokenize_collection(collection, tokenizer, params.max_length, config.data.cache_dir)
    label_names = collection.label_names
    sampler = EpisodeSampler(collection.train, params, label_names, stream="train") if with_training else None
    validation = list(collection.validation_fixed)
    if collection.validation and with_training:
        validation += EpisodeSampler(
            collection.validation, params, label_names, stream="validation", skip_small=collection.validation_is_default
        ).fixed_tasks(
            params.eval_tasks, config.data.eval_query_size
        )
    test = list(collection.test)
    if collection.test_pool:
        count = len(collection.test_pool) * config.data.eval_episodes
        test += EpisodeSampler(collection.test_pool, params, label_names, stream="test").fixed_tasks(count, config.data.eval_query_size)
    return RunTasks(collection, collection.train, sampler, validation, test)


def make_accelerator(params: Params):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=params.mixed_precision)


def build_algorithm(model, params: Params, accelerator, tokenizer) -> MetaAlgorithm:
    if params.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.to(accelerator.device if accelerator is not None else "cpu")
    cls = get_algorithm(params.algorithm)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return cls(model, params, accelerator, pad)
