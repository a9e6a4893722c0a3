"""Building a run's pieces from its config: tasks, episode samplers, the accelerator, the algorithm."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..algorithms import MetaAlgorithm, get_algorithm
from ..config import KshotConfig, Params
from ..data import EpisodeSampler, FixedTask, Shape, TaskCollection, load_tasks, tokenize_collection
from ..errors import ConfigError

logger = logging.getLogger(__name__)
_logged_precision: tuple[str, str] | None = None  # the last choice logged: logged once per process


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
    new = collection.new_classes
    sampler = EpisodeSampler(collection.train, params, label_names, new_classes=new) if with_training else None
    shape, query_size, query_mode = evaluation_shape(config, params, new)
    validation = list(collection.validation_fixed) if with_training else []
    if collection.validation and with_training:
        validation += EpisodeSampler(
            collection.validation,
            params,
            label_names,
            stream="validation",
            skip_small=collection.validation_is_default,
            new_classes=new,
            shape=shape,
        ).fixed_tasks(params.eval_tasks, query_size, query_mode)
    test = list(collection.test)
    if collection.test_pool:
        count = len(collection.test_pool) * config.data.eval_episodes
        test += EpisodeSampler(
            collection.test_pool, params, label_names, stream="test", new_classes=new, shape=shape
        ).fixed_tasks(count, query_size, query_mode)
    return RunTasks(collection, collection.train, sampler, validation, test)


def evaluation_shape(config: KshotConfig, params: Params, new_classes: bool) -> tuple[Shape, int | None, str]:
    """(episode shape, query size, query mode) of validation and test episodes.

    Domain tasks: the training shape, with ``data.eval_query_size`` queries in total. New classes: the
    N-way K-shot protocol of ``data.eval_way``/``eval_shots``/``eval_queries`` (Q queries a class)."""
    shape = Shape.of(params)
    data = config.data
    if not new_classes:
        return shape, data.eval_query_size, "total"
    n_way = None if data.eval_way == "all" else (data.eval_way or params.n_way)
    per_class = data.eval_queries is not None
    shape = Shape(
        n_way=n_way,
        k_support=data.eval_shots or params.k_support,
        k_query=data.eval_queries if per_class else data.eval_query_size,
        support_sampling="per_class",
        query_sampling="per_class" if per_class else "total",
    )
    return shape, shape.k_query, shape.query_sampling


def make_accelerator(params: Params, training: bool = True):
    """The run's Accelerator. Under a distributed launcher it joins the process group (gloo on CPU).

    Its precision is ``params.mixed_precision`` resolved by :func:`.precision.resolve_precision`:
    'bf16'/'fp16' always win; with 'auto' (the default) or 'no', the launcher's explicit choice
    (``accelerate launch --mixed_precision bf16``, ``accelerate config``) wins, since its own default
    'no' is no choice; otherwise 'no' is float32 and 'auto' picks bf16 where the hardware has native
    bf16. ``training``: the accelerator meta-trains (False: ``kshot evaluate``/``adapt``, which have no
    second-order meta-gradient, so ``auto``'s training exceptions do not apply). The choice and its
    reason are logged once.
    """
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import parse_flag_from_env

    from .distributed import launched_world_size, needs_cpu_backend
    from .precision import bf16_training_risk, launcher_precision, precision_caveat, resolve_precision

    # ACCELERATE_USE_CPU is read by AcceleratorState, not PartialState: asked here so both agree.
    cpu = needs_cpu_backend() or parse_flag_from_env("ACCELERATE_USE_CPU")
    device = PartialState(cpu=cpu).device.type  # where accelerate will compute (joins a launcher's group)
    risk = bf16_training_risk(params) if training else None
    precision, reason = resolve_precision(
        params.mixed_precision, device, training=training, launcher=launcher_precision(), risk=risk
    )
    caveat = precision_caveat(params.mixed_precision, precision, device, training=training, risk=risk)
    _log_precision(precision, reason, caveat)
    # accelerate keeps one precision per process and refuses another: a process that runs several
    # commands (the service's worker, tests) would fail on the second with a different precision. The
    # process group (PartialState) is kept; an earlier Accelerator must not be used after this.
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", precision) != precision:
        logger.debug("Switching accelerate's precision from %s to %s.", shared["_mixed_precision"], precision)
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu)
    world = launched_world_size()
    if accelerator.num_processes != world:
        raise ConfigError(
            f"The launcher started {world} processes (WORLD_SIZE={world}) but accelerate set up "
            f"{accelerator.num_processes}: each would train alone. On a machine without GPUs, launch with "
            "`accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`, "
            "or set ACCELERATE_USE_CPU=1."
        )
    return accelerator


def _log_precision(precision: str, reason: str, caveat: str | None) -> None:
    global _logged_precision
    if _logged_precision == (precision, reason) and caveat is None:
        return
    _logged_precision = (precision, reason)
    name = {"no": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(precision, precision)
    if caveat:
        logger.warning("Precision: %s (%s); note: %s.", name, reason, caveat)
    else:
        logger.info("Precision: %s (%s).", name, reason)


NEW_CLASS_ROW = "new class"
"""The label of a new-class model's one head row (each task builds its own rows from it)."""

METRIC_ALGORITHMS = ("protonet", "matchnet", "relationnet", "siamese")


def resolve_pooling(pooling: str, params: Params, new_classes: bool) -> str:
    """'cls' or 'mean' for ``model.pooling`` (see its help)."""
    if pooling != "auto":
        return pooling
    return "mean" if new_classes or params.algorithm in METRIC_ALGORITHMS else "cls"


def load_run_model(
    name: str, label_names: list[str], params: Params, *, new_classes: bool, pooling: str = "auto", revision=None
):
    """The model a run trains or adapts: a head for ``label_names`` (shared labels), or, for new classes,
    one meta-learned row (kept if ``name`` is a new-class model already, else a zero row; the first
    new-class rules ignore it, since one row common to every class moves no class against another);
    with ``pooling`` resolved to 'mean', the mean-pooling layer (kept if ``name`` has it)."""
    import torch
    from transformers import AutoConfig

    from ..algorithms.base import NEW_CLASSES_KEY
    from ..models import load_model
    from ..models.pooling import is_mean_pooled, to_mean_pooling

    if new_classes:
        # The config alone says whether the saved head is a new-class row: the weights are read once.
        saved_row = getattr(AutoConfig.from_pretrained(name, revision=revision), NEW_CLASSES_KEY, False)
        model = load_model(name, None if saved_row else [NEW_CLASS_ROW], revision)
        if not saved_row:
            with torch.no_grad():
                for p in model.get_submodule(_head_module(model)).parameters():
                    p.zero_()
        setattr(model.config, NEW_CLASSES_KEY, True)
    else:
        model = load_model(name, label_names, revision)
    if resolve_pooling(pooling, params, new_classes) == "mean" and not is_mean_pooled(model):
        to_mean_pooling(model)
    return model


def _head_module(model) -> str:
    from ..algorithms.functional import head_names

    return head_names(model)[0].split(".")[0]


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
    device = accelerator.device.type if accelerator is not None else "cpu"
    precision = accelerator.mixed_precision if accelerator is not None else "no"
    if packed_dropout_masks(params.dropout_masks, device, precision):
        from ..models.packed_dropout import use_packed_dropout

        use_packed_dropout(model)
    model.to(accelerator.device if accelerator is not None else "cpu")
    cls = get_algorithm(params.algorithm)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return cls(model, params, accelerator, pad)


def packed_dropout_masks(requested: str, device: str, precision: str) -> bool:
    """Whether a model that trains on ``device`` ('cpu', 'cuda', ...) in ``precision`` (accelerate's 'no',
    'bf16', ...) draws packed dropout masks (``params.dropout_masks``).

    'auto': on the CPU under bf16 only. There torch's generator draws one element at a time and SDPA with
    dropout is unfused anyway: packed ANIL made 1.19x torch's episodes/s. In float32 the matrix products
    dominate and the eager attention that packed masks need costs more than the masks save (0.80x; both in
    one run of benchmarks/throughput.py, BENCHMARKS.md). A GPU's generator is fast and its SDPA fuses dropout."""
    if requested == "auto":
        return device == "cpu" and precision == "bf16"
    return requested == "packed"


def set_dropout(model, p: float, attention_only: bool = False) -> int:
    """Set every dropout layer of ``model`` to ``p``, attention dropout included (Hugging Face attention
    reads its module's ``dropout.p``), or with ``attention_only`` the attention dropout alone: the dropout
    layers held by a module whose class name ends in 'Attention' (BertSelfAttention,
    DistilBERT's MultiHeadSelfAttention, ...). The model's config is left alone, so a saved model keeps
    its own. Returns how many layers were set."""
    import torch

    from ..models.pooling import pooling_modules

    fixed = {id(m) for name in pooling_modules(model) for m in model.get_submodule(name).modules()}
    count = 0
    for parent in model.modules():
        if id(parent) in fixed:  # the mean-pooling layer is a fixed function: its dropout stays 0
            continue
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
