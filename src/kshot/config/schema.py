"""The two configuration files: ``config.yaml`` (where things are) and ``params.yaml`` (how to train).

Every numeric field has a :class:`~.base.Range` that its help text states: wide enough that a
demanding real run never meets it, narrow enough that a request body cannot make a worker allocate
without bound or loop for ever (see :mod:`.base` for the limits on strings and lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError, shown
from .algorithms import algorithm_spec
from .base import ConfigSection, Range, field

DataFormat = Literal["arsc", "review_json", "hf", "class_splits"]
TaskKind = Literal["auto", "domains", "classes"]
ClassList = list[str] | str | None  # names, or a file of names (one a line)
Sampling = Literal["per_class", "total"]

# Shared ranges. Learning rates: a fine-tuning rate is about 1e-5, reptile's interpolation factor 1.
LEARNING_RATE = Range(0, 10)
STEPS = Range(0, 1000)  # inner-loop steps: each one is a forward and backward pass
OUTER_STEPS = Range(0, 10_000_000)
EXAMPLES = Range(1, 10_000)  # examples per class or per episode
BATCH = Range(1, 4096)
PROBABILITY = Range(0, 1, high_open=True)
POSITIVE_SCALE = Range(0, 1000, low_open=True)
NORM = Range(0, 1_000_000, low_open=True)


@dataclass
class DataConfig(ConfigSection):
    format: DataFormat = field(
        "arsc",
        help="'arsc' (folder of <domain>.<t2|t4|t5>.<train|dev|test> files), 'review_json' "
        "({'data': [{text, label, domain}]}), 'hf' (any `datasets` source: hub id or local "
        "json/jsonl/csv/parquet file), or 'class_splits' (a folder of train/valid/test.jsonl and "
        "labels.train/valid/test.txt whose classes are disjoint: new classes, as in ../shared/data/intent).",
    )
    path: str = field(
        "../shared/data/arsc",
        help="Folder (arsc, class_splits), file (review_json), or hub id / file (hf). Relative paths are relative "
        "to the working directory.",
    )
    text_column: str | None = field(
        None, help="Column holding the text; null = the format's ('text'; class_splits: 'sentence')."
    )
    label_column: str = field("label", help="Column holding the label (review_json, hf, class_splits).")
    domain_column: str | None = field(
        "domain",
        help="Column naming the domain; one domain is one task (review_json, hf). null: no domains, tasks are "
        "draws of n_way classes from the training classes (see tasks).",
    )
    tasks: TaskKind = field(
        "auto",
        help="What a task is: 'domains' (each domain one task; every task shares the label names), 'classes' "
        "(a draw of n_way classes from a pool; train, validation and test classes are disjoint, and every "
        "episode numbers its classes 0..N-1 afresh, in random order while meta-training), or 'auto' "
        "('classes' for class_splits or domain_column null, else 'domains').",
    )
    train_classes: ClassList = field(
        None,
        help="tasks=classes: the meta-training classes, as a list or a file of names (one a line); null = every "
        "class not listed for validation or test (class_splits: labels.train.txt).",
    )
    validation_classes: ClassList = field(
        None, help="tasks=classes: the classes for model selection (list or file); class_splits: labels.valid.txt."
    )
    test_classes: ClassList = field(
        None,
        help="tasks=classes: the held-out test classes (list or file), never trained on; class_splits: "
        "labels.test.txt.",
    )
    hf_split: str = field("train", help="Split to read from a `datasets` source (hf).")
    label_names: list[str] | None = field(
        None, help="Label names in id order; null = sorted distinct labels (ARSC: negative, positive)."
    )
    train_domains: list[str] | None = field(
        None, help="Meta-training domains; null = every domain not listed for validation or test."
    )
    validation_domains: list[str] = field(
        default_factory=list,
        help="Domains held out for model selection. Empty: ARSC validates on the training tasks' dev files; "
        "other formats use no validation.",
    )
    test_domains: list[str] | None = field(
        None,
        help="Held-out test domains; null = the format's default (ARSC: workspace.target.list; review_json: "
        "automotive, computer_&_video_games, office_products).",
    )
    eval_episodes: int = field(
        1,
        help="Episodes per test domain for formats without a fixed support/query split.",
        range=Range(1, 100_000),
    )
    eval_query_size: int | None = field(
        None,
        help="Query examples per test episode (non-ARSC); null = every example not in the support set.",
        range=Range(1, 1_000_000),
        null="use every example not in the support set",
    )
    eval_way: int | Literal["all"] | None = field(
        None,
        help="tasks=classes: classes per validation/test episode; 'all' = every validation/test class at once; "
        "null = params.n_way (every class when that is null).",
        range=Range(2, 10_000),
        null="use params.n_way",
    )
    eval_shots: int | None = field(
        None,
        help="tasks=classes: support examples per class in validation/test episodes; null = params.k_support.",
        range=EXAMPLES,
        null="use params.k_support",
    )
    eval_queries: int | None = field(
        None,
        help="tasks=classes: query examples per class in validation/test episodes; null = eval_query_size in "
        "total (every remaining example when that is null too).",
        range=EXAMPLES,
        null="use eval_query_size",
    )
    validation_protocol: Literal["dev", "held_out"] = field(
        "dev",
        help="arsc: how validation_domains are scored. 'dev': episodes drawn from each domain's dev files; "
        "'held_out': the test protocol on held-out training domains (support 5 + 5 drawn once from the "
        "domain's train file, query its test file), as configs/arsc/tune.yaml scores them, for model selection "
        "and `kshot tune` without the target tasks.",
    )
    cache_dir: str = field(
        ".kshot_cache", help="Where tokenized datasets are cached, keyed by texts, tokenizer and max_length."
    )

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.task_kind() == "classes" and self.format in ("arsc", "review_json"):
            raise ConfigError(
                f"'{prefix}tasks' is 'classes', but the {self.format} format's tasks are domains that share their "
                "labels. Use tasks: domains, or format hf / class_splits for tasks drawn from a pool of classes."
            )
        if self.task_kind() == "domains" and self.domain_column is None:
            raise ConfigError(
                f"'{prefix}tasks' is 'domains' but '{prefix}domain_column' is null: name the domain column, "
                "or set tasks: classes to draw tasks from a pool of classes."
            )
        lists = {
            kind: set(value)
            for kind in ("train_classes", "validation_classes", "test_classes")
            if isinstance(value := getattr(self, kind), list)
        }
        for a, b in (
            ("test_classes", "train_classes"),
            ("test_classes", "validation_classes"),
            ("validation_classes", "train_classes"),
        ):
            both = lists.get(a, set()) & lists.get(b, set())
            if both:
                raise ConfigError(
                    f"Class(es) {shown(', '.join(sorted(both)), 200)} are listed both in '{prefix}{a}' and in "
                    f"'{prefix}{b}'; the three class lists must be disjoint (test classes are never trained on)."
                )
        overlap = set(self.test_domains or []) & (set(self.train_domains or []) | set(self.validation_domains))
        if overlap:
            raise ConfigError(
                f"Domain(s) {', '.join(sorted(overlap))} are listed both as test domains and for "
                f"training/validation in '{prefix}test_domains'; test domains are never trained on."
            )

    def task_kind(self) -> str:
        """'domains' or 'classes': what one task is (see ``tasks``)."""
        if self.tasks != "auto":
            return self.tasks
        return "classes" if self.format == "class_splits" or self.domain_column is None else "domains"

    def text_field(self) -> str:
        """The text column: ``text_column``, or the format's own name for it."""
        return self.text_column or ("sentence" if self.format == "class_splits" else "text")


@dataclass
class ModelConfig(ConfigSection):
    name_or_path: str | None = field(
        None,
        help="Hub id or local folder of any AutoModelForSequenceClassification checkpoint; null = bundled "
        "all-MiniLM-L6-v2.",
    )
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when loading by hub id.")
    pooling: Literal["auto", "cls", "mean"] = field(
        "auto",
        help="What the classifier head reads: 'cls' (the model's own pooler), or 'mean' (one extra frozen layer "
        "feeds the head the standardised mean of the token states, about unit length; a plain "
        "BertForSequenceClassification that `transformers.pipeline` serves; see models/pooling.py). 'auto': "
        "'mean' for new classes (data.tasks classes) and the metric-based algorithms, whose heads are built "
        "from embeddings, else 'cls'.",
    )


@dataclass
class LoggingConfig(ConfigSection):
    log_dir: str = field("logs", help="Folder of running_logs.log.")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field("INFO", help="Console and file log level.")
    progress_bar: bool = field(True, help="Show a progress bar during meta-training.")


@dataclass
class KshotConfig(ConfigSection):
    data: DataConfig = field(default_factory=DataConfig, help="Where the tasks come from.")
    model: ModelConfig = field(default_factory=ModelConfig, help="The model to meta-train.")
    output_dir: str = field("outputs/kshot", help="Where the best model and checkpoints go.")
    logging: LoggingConfig = field(default_factory=LoggingConfig, help="Logging.")


@dataclass
class Params(ConfigSection):
    algorithm: str = field("reptile", help="Meta-learning algorithm (see `kshot.algorithms.available()`).")
    seed: int = field(
        42,
        help="Seed of every random generator: episodes, inner batches, initialisation.",
        range=Range(0, 2**32 - 1),
    )
    meta_steps: int = field(200, help="Outer (meta) steps.", range=Range(1, OUTER_STEPS.high))
    meta_batch_size: int = field(4, help="Tasks per outer step.", range=Range(1, 1024))
    n_way: int | None = field(
        None,
        help="Classes per episode; null = every label of the task.",
        range=Range(2, 1000),
        null="use every label of the task",
    )
    k_support: int = field(
        5, help="Support examples: per class (support_sampling=per_class) or in total.", range=EXAMPLES
    )
    k_query: int = field(
        10,
        help="Query examples: per class (query_sampling=per_class) or in total; 0 = none (the metric-based "
        "algorithms then split the support set; the others need at least 1).",
        range=Range(0, EXAMPLES.high),
    )
    support_sampling: Sampling = field(
        "per_class", help="'per_class' (N-way K-shot, balanced) or 'total' (K at random)."
    )
    query_sampling: Sampling = field(
        "total", help="'per_class' (balanced) or 'total' (the task's own label distribution)."
    )
    inner_steps: int = field(5, help="Inner-loop steps on the support set during meta-training.", range=STEPS)
    inner_batch_size: int = field(10, help="Support examples per inner step.", range=BATCH)
    inner_lr: float = field(5e-5, help="Inner-loop learning rate.", range=LEARNING_RATE)
    inner_optimizer: Literal["sgd", "adam"] = field(
        "adam", help="Inner-loop optimizer; its state starts fresh for every task."
    )
    outer_lr: float = field(
        1.0,
        help="Outer step size: interpolation factor (outer_optimizer=none) or the outer optimizer's learning rate.",
        range=LEARNING_RATE,
    )
    outer_optimizer: Literal["none", "sgd", "adam"] = field(
        "none",
        help="'none': θ ← θ + outer_lr·mean(θ′−θ); 'sgd'/'adam': the pseudo-gradient θ−θ′ goes to that optimizer.",
    )
    outer_lr_schedule: Literal["constant", "linear"] = field(
        "linear", help="Outer learning rate over meta_steps: constant, or linear decay to zero."
    )
    # Gradient-based meta-learners (maml, fomaml, metasgd, anil) and the transfer baseline.
    meta_lr: float = field(
        5e-5,
        help="Adam learning rate of the meta-parameters of maml, fomaml, metasgd, anil and transfer (reptile "
        "uses outer_lr). Meta-gradients are true gradients, so this is a fine-tuning-sized rate (about 1e-5 to "
        "1e-4 for MiniLM/BERT), not reptile's interpolation factor 1.0. Follows outer_lr_schedule.",
        range=LEARNING_RATE,
    )
    first_order: bool = field(
        False, help="maml: drop the second-order terms (maml then equals fomaml); no graph of the inner loop is kept."
    )
    second_order_steps: int | None = field(
        None,
        help="maml: second-order terms only through the last n inner steps, the earlier ones first-order "
        "(memory and time grow with n, not with inner_steps); null = through every step.",
        range=STEPS,
        null="keep them through every step",
    )
    anil_head_init: Literal["meta", "prototypes"] = field(
        "meta",
        help="anil: the head each task's inner loop starts from: 'meta' (the meta-learned head) or 'prototypes' "
        "(Proto-MAML, Triantafillou et al. 2020: the meta-learned head plus the linear layer that scores minus "
        "the squared distance to each class's mean support feature, so a task's classes shape its starting "
        "head; needs a head that is one Linear layer).",
    )
    anil_prototype_scale: float = field(
        1.0,
        help="anil with anil_head_init='prototypes': multiply the prototype layer (its logits are minus this "
        "times the squared distance to each class mean) by this; below 1 a single unusual support example "
        "moves the starting head less.",
        range=POSITIVE_SCALE,
    )
    label_names_as_support: bool = field(
        False,
        help="Add each class's name, as a text ('card_arrival' -> 'card arrival'), to every support set as one "
        "more example of that class: in training and evaluation episodes and in `kshot adapt`, for every "
        "algorithm. A few-shot task's label names are information it has for free; meaningful names help most "
        "at one shot. Leave it off when labels are codes.",
    )
    new_class_head: Literal["zero", "unicorn", "prototypes"] = field(
        "prototypes",
        help="New classes (tasks drawn from a pool of classes; see data.tasks): the N-row head every task of the "
        "gradient-based algorithms and of reptile/transfer/finetune starts from, built from one meta-learned row "
        "by a rule blind to which classes they are: 'zero', 'unicorn' (every row the meta-learned row, "
        "Unicorn-MAML) or 'prototypes' (that row plus the support set's class means, Proto-MAML; with 0 "
        "adaptation steps a nearest-prototype classifier). See algorithms/heads.py.",
    )
    new_class_head_scale: float = field(
        10.0,
        help="new_class_head='prototypes': logits start as minus this times the squared distance to each class "
        "mean of the head's input features (about unit length with model.pooling mean).",
        range=POSITIVE_SCALE,
    )
    metasgd_init_lr: float | None = field(
        None,
        help="metasgd: initial value of every learned per-parameter inner learning rate; null = inner_lr.",
        range=LEARNING_RATE,
        null="start at inner_lr",
    )
    metasgd_lr_lr: float | None = field(
        None,
        help="metasgd: Adam learning rate of the learned inner rates; null = metasgd_init_lr / 100, so a step "
        "moves a rate by about 1% of its start.",
        range=LEARNING_RATE,
        null="use metasgd_init_lr / 100",
    )
    max_grad_norm: float | None = field(
        1.0,
        help="Clip each inner step's gradient norm; null = no clipping.",
        range=NORM,
        null="turn clipping off",
    )
    eval_every: int = field(
        50, help="Evaluate on validation tasks every this many outer steps (0 = never).", range=OUTER_STEPS
    )
    eval_tasks: int = field(
        8, help="Validation episodes per evaluation (sampled once, the same every time).", range=Range(1, 100_000)
    )
    eval_inner_steps: int = field(
        10, help="Adaptation steps on the support set at evaluation and in `kshot adapt`.", range=STEPS
    )
    select_metric: Literal["accuracy", "macro_f1"] = field(
        "macro_f1", help="Validation metric that picks the best model (mean over validation tasks)."
    )
    eval_batch_size: int = field(64, help="Query examples scored per forward pass.", range=BATCH)
    checkpoint_every: int = field(
        25,
        help="Write a resumable checkpoint every this many outer steps (0 = only at evaluations and the end).",
        range=OUTER_STEPS,
    )
    max_length: int = field(
        256,
        help="Truncate texts to this many tokens; models of this family take at most 512.",
        range=Range(1, 512),
    )
    test_after_train: bool = field(True, help="Evaluate the best model on the test tasks when training ends.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = field(
        "auto",
        help="Autocast precision of the forward passes; weights, updates, optimizer state and saved models stay "
        "float32. 'auto': bf16 where the hardware multiplies bf16 matrices natively (a CPU with AVX512-BF16 or "
        "AMX, a CUDA GPU with bf16), float32 elsewhere; float32 too to meta-train learned_optimizer, or maml/"
        "metasgd second order through a first Adam inner step, whose meta-gradients bf16 rounding ruins. 'no': "
        "float32. 'bf16'/'fp16': always (fp16 needs a GPU). With 'auto' or 'no', `accelerate launch "
        "--mixed_precision bf16|fp16` wins. The choice is logged (see training/precision.py).",
    )
    prior_calibration: bool = field(
        False,
        help="Shift predictions from the support set's label prior to the prior averaged over the training "
        "tasks (see training/calibration.py).",
    )
    freeze_embeddings: bool = field(
        False,
        help="Keep the input word embeddings fixed everywhere: half of MiniLM's weights, rarely worth adapting "
        "from ten examples, and the costliest to copy and update.",
    )
    dropout: float | None = field(
        None,
        help="Dropout probability of every dropout layer of the model (hidden, attention, classifier) while it "
        "trains and adapts; null keeps the model's own (MiniLM: 0.1). 0 turns dropout off: on CPU, drawing the "
        "random masks takes about 15 % of an ANIL meta-step.",
        range=PROBABILITY,
        null="keep the model's own",
    )
    attention_dropout: float | None = field(
        None,
        help="Dropout probability of the attention weights alone (the dropout layers inside a module whose "
        "class name ends in 'Attention', as in BERT, RoBERTa, ELECTRA and DistilBERT); null = the same as "
        "dropout. 0 with dropout above 0 keeps the hidden-state dropout but spares the largest masks (one per "
        "head over every token pair) and lets attention run as one fused kernel.",
        range=PROBABILITY,
        null="follow dropout",
    )
    dropout_masks: Literal["auto", "torch", "packed"] = field(
        "auto",
        help="How dropout draws its random masks while the model trains. 'torch': torch's dropout, one draw of the "
        "generator per element (on a CPU about a third of a bf16 meta-step). 'packed': four elements per 64-bit "
        "draw, in the dropout layers and, through transformers' attention interface, in SDPA attention "
        "(models/packed_dropout.py); the same keep probability to within 1/131072. 'auto': packed on the CPU under "
        "bf16 (1.19x episodes/s there, 0.80x in float32: BENCHMARKS.md), torch's elsewhere (a GPU's generator is "
        "fast and its SDPA fuses dropout). Saved models are unchanged.",
    )
    gradient_checkpointing: bool = field(
        False,
        help="Recompute backbone activations in the backward pass to save memory. maml/metasgd with second-order "
        "steps: each inner step is also run again in the backward pass, so one step's double-backward graph is held "
        "at a time instead of every step's (the same meta-gradient, one more forward and backward pass per step).",
    )
    # Metric-based algorithms (protonet, matchnet, relationnet, siamese).
    distance: Literal["euclidean", "cosine"] = field(
        "euclidean",
        help="protonet: logits are minus the squared Euclidean distance to each class prototype ('euclidean') "
        "or cosine_scale × cosine similarity ('cosine').",
    )
    cosine_scale: float = field(
        10.0,
        help="Cosine similarities are multiplied by this before a softmax (protonet with distance=cosine, "
        "matchnet): 1.0 would cap logit gaps at 2, too soft to train.",
        range=POSITIVE_SCALE,
    )
    metric_lr: float = field(
        2e-5,
        help="Learning rate of the Adam optimizer that trains the encoder of the metric-based algorithms on "
        "episode losses.",
        range=LEARNING_RATE,
    )
    scorer_lr: float = field(
        1e-3,
        help="Learning rate of the small learned scorers (relationnet's relation module, siamese's pair "
        "scorer); higher than metric_lr because they start from scratch.",
        range=LEARNING_RATE,
    )
    scorer_hidden: int = field(
        128, help="Hidden units of the learned scorer of relationnet and siamese.", range=Range(1, 4096)
    )
    siamese_neighbors: int = field(
        3,
        help="siamese: a class scores the mean pair score of its this many most similar support examples (all "
        "of them if it has fewer).",
        range=EXAMPLES,
    )
    metric_finetune: bool = field(
        False,
        help="Metric-based algorithms: at adaptation, first fine-tune on the support set (eval_inner_steps "
        "steps, inner_lr, inner_optimizer) with the algorithm's own loss on random halves of each class; "
        "false = embed the support set only.",
    )
    # learned_optimizer (it also uses meta_lr for the initialisation and first_order, see their help).
    lopt_kind: Literal["mlp", "lstm"] = field(
        "mlp",
        help="learned_optimizer: the network shared by every parameter coordinate: 'mlp', or 'lstm' with a "
        "hidden state per coordinate (memory grows with lopt_hidden × model size).",
    )
    lopt_hidden: int = field(
        16, help="learned_optimizer: hidden units of the coordinate-wise network.", range=Range(1, 1024)
    )
    lopt_lr: float = field(
        1e-3,
        help="learned_optimizer: Adam learning rate of the learned optimizer's own weights (the initialisation "
        "uses meta_lr). With first_order the optimizer's inputs are detached: no second derivatives of the "
        "loss, much less memory.",
        range=LEARNING_RATE,
    )
    lopt_max_step: float | None = field(
        0.01,
        help="learned_optimizer: bound on each coordinate's update per inner step (max_step·tanh(Δ/max_step)); "
        "null = unbounded.",
        range=Range(0, 10, low_open=True),
        null="leave updates unbounded",
    )
    lopt_per_tensor_scales: bool = field(
        True,
        help="learned_optimizer: learn one step-size scale per parameter tensor (keyed by name; names it has "
        "not seen get 1).",
    )
    lopt_meta_init: bool = field(
        True,
        help="learned_optimizer: also meta-learn the initialisation (false: the loaded weights stay the "
        "starting point; only the update rule is learned).",
    )
    lopt_truncate: int | None = field(
        None,
        help="learned_optimizer: back-propagate through the last n inner steps only (a truncated unroll; the "
        "initialisation gets the earlier steps' gradient straight through); null = the whole unroll.",
        range=Range(1, STEPS.high),
        null="back-propagate through the whole unroll",
    )
    lopt_checkpoint_segment: int = field(
        0,
        help="learned_optimizer: gradient checkpointing of the unroll: keep the state every this many inner "
        "steps and recompute each segment in the backward pass, and recompute the coordinate-wise network's "
        "activations (about 100 floats per parameter per step) too; 0 = keep every step's activations.",
        range=STEPS,
    )
    lopt_path_loss_weight: float = field(
        0.0,
        help="learned_optimizer: meta-loss = query loss + this × mean support loss along the unroll.",
        range=Range(0, 1000),
    )
    lopt_meta_grad_clip: float | None = field(
        1.0,
        help="learned_optimizer: clip the meta-gradient's norm (separately for the initialisation and the "
        "optimizer's weights); null = no clipping.",
        range=NORM,
        null="turn clipping off",
    )
    lopt_path: str | None = field(
        None,
        help="learned_optimizer: folder holding learned_optimizer.safetensors/.json to start from or to adapt "
        "with (e.g. one learned on another model of the same family); null = the model folder's own, or a "
        "fresh one for training.",
    )

    def validate(self, prefix: str = "") -> None:
        spec = algorithm_spec(self.algorithm, key=f"{prefix}algorithm")
        super().validate(prefix)
        spec.check(self, prefix)
