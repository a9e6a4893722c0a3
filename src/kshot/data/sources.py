"""Readers for the three data formats. Each returns a :class:`TaskCollection` with domain lists resolved
and checked; nothing here knows about models or episodes."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import DataError, did_you_mean, shown
from .tasks import FixedTask, TaskCollection, TaskExamples

logger = logging.getLogger(__name__)

ARSC_THRESHOLDS = ("t2", "t4", "t5")
ARSC_LABELS = {"-1": 0, "1": 1}
ARSC_LABEL_NAMES = ["negative", "positive"]
ARSC_SHOTS = 5  # the official supports: 5 examples of each label
REVIEW_JSON_TEST_DOMAINS = ["automotive", "computer_&_video_games", "office_products"]


def load_tasks(config: DataConfig) -> TaskCollection:
    """Read the configured source into train/validation/test tasks."""
    if config.format == "arsc":
        return load_arsc(config)
    if config.format == "class_splits":
        return load_class_splits(config)
    if config.task_kind() == "classes":
        return load_class_pools(config)
    return load_table(config)


def _check_domains(kind: str, names: Sequence[str], known: Sequence[str], where: str) -> None:
    for name in names:
        if name not in known:
            raise DataError(
                f"Unknown domain '{name}' in data.{kind} ({where}).{did_you_mean(name, known)} "
                f"Known domains: {', '.join(sorted(known))}."
            )


def _split_domains(config: DataConfig, known: list[str], default_test: list[str], where: str):
    test = list(config.test_domains) if config.test_domains is not None else [d for d in default_test if d in known]
    validation = list(config.validation_domains)
    _check_domains("test_domains", test, known, where)
    _check_domains("validation_domains", validation, known, where)
    if config.train_domains is not None:
        _check_domains("train_domains", config.train_domains, known, where)
        train = list(config.train_domains)
    else:
        train = [d for d in known if d not in test and d not in validation]
    leak = set(train) & set(test)
    if leak:
        raise DataError(
            f"Test domain(s) {', '.join(sorted(leak))} are also training domains ({where});"
            " test domains are never trained on."
        )
    if not train:
        raise DataError(f"No training domains left in {where} after removing validation and test domains.")
    return train, validation, test


# ---------------------------------------------------------------------------------------------- ARSC


def _read_list(path: Path) -> list[str]:
    lines = text_lines(path, " Is data.path an ARSC folder (see its README)?")
    return [line.strip() for line in lines if line.strip()]


def text_lines(path: Path, hint: str = "") -> list[str]:
    """The lines of a UTF-8 text file, or a DataError naming the file (and ``hint``: what it should be)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"Cannot read {path}: {err.strerror}.{hint}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}).{hint}") from err


def read_arsc_file(path: Path, name: str, domain: str) -> TaskExamples:
    """One ``<domain>.<threshold>.<split>`` file: ``text<TAB>label`` per line, label 1 or -1."""
    lines = text_lines(path)
    texts, labels = [], []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        if not sep:
            raise DataError(f"{path}, line {lineno}: expected 'text<TAB>label', found no tab.")
        if label.strip() not in ARSC_LABELS:
            raise DataError(f"{path}, line {lineno}: label {label.strip()!r} is not one of 1, -1.")
        if not text.strip():
            raise DataError(f"{path}, line {lineno}: the text is empty. Remove the line or fill in the text.")
        texts.append(text.strip())
        labels.append(ARSC_LABELS[label.strip()])
    if not texts:
        raise DataError(f"{path} holds no examples.")
    return TaskExamples(name=name, domain=domain, texts=texts, labels=np.array(labels), source=str(path))


def load_arsc(config: DataConfig) -> TaskCollection:
    root = Path(config.path)
    if not root.is_dir():
        raise DataError(
            f"ARSC folder {root} does not exist (data.path, relative to {Path.cwd()}). "
            "Point data.path at the folder holding workspace.filtered.list."
        )
    known = _read_list(root / "workspace.filtered.list")
    targets = _read_list(root / "workspace.target.list")
    known_all = list(dict.fromkeys(known + targets))
    train, validation, test = _split_domains(config, known_all, targets, str(root))

    def tasks(domain: str, split: str) -> list[TaskExamples]:
        return [read_arsc_file(root / f"{domain}.{t}.{split}", f"{domain}.{t}", domain) for t in ARSC_THRESHOLDS]

    def held_out(domain: str) -> list[FixedTask]:
        # The official protocol: support = <task>.train (5 + 5), query = <task>.test. A training domain
        # held out (to tune on, never on the official targets) has a full train file: its support is
        # 5 + 5 examples drawn from it, the same ones on every run.
        pairs = zip(tasks(domain, "train"), tasks(domain, "test"))
        return [FixedTask(name=support.name, support=arsc_support(support), query=query) for support, query in pairs]

    collection = TaskCollection(label_names=list(ARSC_LABEL_NAMES), train=[t for d in train for t in tasks(d, "train")])
    if validation and config.validation_protocol == "held_out":
        collection.validation_fixed = [t for d in validation for t in held_out(d)]
    elif validation:
        collection.validation = [t for d in validation for t in tasks(d, "dev")]
    else:
        collection.validation = [t for d in train for t in tasks(d, "dev")]
        collection.validation_is_default = True
    collection.test = [t for d in test for t in held_out(d)]
    return collection


def arsc_support(examples: TaskExamples) -> TaskExamples:
    """``examples`` if it is an official 5 + 5 support, else 5 + 5 of them chosen by the task's name."""
    groups = examples.by_label()
    if all(len(ix) <= ARSC_SHOTS for ix in groups.values()):
        return examples
    rng = np.random.default_rng(zlib.crc32(examples.name.encode()))
    chosen = [rng.choice(ix, size=min(ARSC_SHOTS, len(ix)), replace=False) for ix in groups.values()]
    return examples.subset(np.sort(np.concatenate(chosen)))


# ------------------------------------------------------------------------ review JSON and `datasets`


def _load_dataset(config: DataConfig):
    import datasets

    path = config.path
    local = Path(path)
    try:
        if config.format == "review_json":
            if not local.is_file():
                raise DataError(f"Review JSON file {local} does not exist (data.path, relative to {Path.cwd()}).")
            return datasets.load_dataset("json", data_files=str(local), field="data", split="train")
        suffix = local.suffix.lower()
        if local.is_file():
            builder = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(suffix)
            if builder is None:
                raise DataError(f"{local}: unsupported file type '{suffix}'. Use .json, .jsonl, .csv or .parquet.")
            return datasets.load_dataset(builder, data_files=str(local), split="train")
        if local.is_dir():
            return (
                datasets.load_from_disk(str(local))[config.hf_split]
                if (local / "dataset_dict.json").exists()
                else datasets.load_from_disk(str(local))
            )
        # Anything else is a hub id: the normal path for users who can reach the hub.
        return datasets.load_dataset(path, split=config.hf_split)
    except DataError:
        raise
    except Exception as err:  # datasets raises many exception types for unreadable sources
        raise DataError(f"Cannot load the dataset '{path}' ({config.format}): {type(err).__name__}: {err}") from err


def load_table(config: DataConfig) -> TaskCollection:
    ds = _load_dataset(config)
    where = config.path
    for kind, column in (
        ("text_column", config.text_field()),
        ("label_column", config.label_column),
        ("domain_column", config.domain_column),
    ):
        if column not in ds.column_names:
            raise DataError(
                f"{where}: no column '{column}' (data.{kind}).{did_you_mean(column, ds.column_names)} "
                f"Columns: {', '.join(ds.column_names)}."
            )
    texts = ds[config.text_field()]
    raw_labels = [str(v) if v is not None else None for v in ds[config.label_column]]
    domains = [str(v) if v is not None else None for v in ds[config.domain_column]]
    for i, (text, label, domain) in enumerate(zip(texts, raw_labels, domains)):
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{where}, row {i}: the text ('{config.text_field()}') is empty. Remove the row or fill in the text."
            )
        if label is None:
            raise DataError(f"{where}, row {i}: the label ('{config.label_column}') is missing.")
        if domain is None:
            raise DataError(f"{where}, row {i}: the domain ('{config.domain_column}') is missing.")
    label_names = list(config.label_names) if config.label_names else sorted(set(raw_labels))
    label_ids = {name: i for i, name in enumerate(label_names)}
    for i, label in enumerate(raw_labels):
        if label not in label_ids:
            raise DataError(
                f"{where}, row {i}: label '{label}' is not in data.label_names ({', '.join(label_names)}). "
                "Add it to data.label_names or fix the row."
            )
    labels = np.array([label_ids[lab] for lab in raw_labels], dtype=np.int64)
    domain_arr = np.array(domains, dtype=object)
    known = list(dict.fromkeys(domains))
    default_test = REVIEW_JSON_TEST_DOMAINS if config.format == "review_json" else []
    train, validation, test = _split_domains(config, known, default_test, where)

    def task(domain: str) -> TaskExamples:
        idx = np.flatnonzero(domain_arr == domain)
        return TaskExamples(
            name=domain, domain=domain, texts=[texts[i].strip() for i in idx], labels=labels[idx], source=where
        )

    return TaskCollection(
        label_names=label_names,
        train=[task(d) for d in train],
        validation=[task(d) for d in validation],
        test_pool=[task(d) for d in test],
    )


# ------------------------------------------------------------------------------ pools of new classes


def read_class_list(value: list[str] | str, key: str) -> list[str]:
    """A class list from the config: the names themselves, or a file of names (one a line)."""
    if isinstance(value, list):
        return list(value)
    path = Path(value)
    names = [line.strip() for line in text_lines(path, f" It is the class list data.{key}.") if line.strip()]
    if not names:
        raise DataError(f"The class list {path} (data.{key}) names no class.")
    return names


def _check_disjoint(lists: dict[str, list[str]], where: str) -> None:
    kinds = list(lists)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            both = sorted(set(lists[a]) & set(lists[b]))
            if both:
                few = ", ".join(repr(n) for n in both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
                raise DataError(
                    f"{few} are both {a} and {b} classes ({where}); the class lists must be disjoint: "
                    "test classes are never trained on, validation classes never chosen from."
                )


def _pool(name: str, texts: Sequence[str], labels: Sequence[str], classes: list[str], where: str) -> TaskExamples:
    """The examples of ``classes`` as one task; labels are ids into ``classes``."""
    ids = {c: i for i, c in enumerate(classes)}
    keep = [i for i, lab in enumerate(labels) if lab in ids]
    missing = sorted(set(classes) - {labels[i] for i in keep})
    if missing:
        raise DataError(
            f"{where}: {len(missing)} {name} class(es) have no example, e.g. {missing[0]!r}. "
            "Check the class list against the data's labels."
        )
    return TaskExamples(
        name=name,
        domain=name,
        texts=[texts[i] for i in keep],
        labels=np.array([ids[labels[i]] for i in keep], dtype=np.int64),
        source=where,
        label_names=list(classes),
    )


def _collection(train: TaskExamples, validation: TaskExamples | None, test: TaskExamples | None) -> TaskCollection:
    return TaskCollection(
        label_names=list(train.label_names or []),
        train=[train],
        validation=[validation] if validation is not None else [],
        test_pool=[test] if test is not None else [],
        new_classes=True,
    )


def _read_rows(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Texts and labels of one JSON Lines file, every row checked."""
    import json

    texts, labels = [], []
    lines = text_lines(path, " Is data.path a class_splits folder?")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {lineno}: not a JSON object ({err.msg}).") from err
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {lineno}: expected a JSON object.")
        text, label = row.get(text_column), row.get(label_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{path}, line {lineno}: no text in '{text_column}' (data.text_column). "
                f"Keys: {', '.join(map(str, list(row)[:10]))}."
            )
        if label is None or not str(label).strip():
            raise DataError(f"{path}, line {lineno}: no label in '{label_column}' (data.label_column).")
        texts.append(text.strip())
        labels.append(str(label).strip())
    return texts, labels


def load_class_splits(config: DataConfig) -> TaskCollection:
    """A folder of ``{train,valid,test}.jsonl`` and ``labels.{train,valid,test}.txt`` (the few-shot intent
    splits of ../shared/data/intent): each split's examples are one pool of that split's classes."""
    root = Path(config.path)
    if not root.is_dir():
        raise DataError(
            f"class_splits folder {root} does not exist (data.path, relative to {Path.cwd()}). Point data.path "
            "at a folder holding train.jsonl, valid.jsonl, test.jsonl and labels.train.txt, ... (one split)."
        )
    pools: dict[str, TaskExamples | None] = {}
    lists: dict[str, list[str]] = {}
    for kind, split in (("train", "train"), ("validation", "valid"), ("test", "test")):
        key = f"{kind}_classes"
        given = getattr(config, key)
        default = root / f"labels.{split}.txt"
        if given is None and not default.is_file() and kind != "train":
            pools[kind] = None
            continue
        lists[kind] = read_class_list(given if given is not None else str(default), key)
    _check_disjoint(lists, str(root))
    for kind, split in (("train", "train"), ("validation", "valid"), ("test", "test")):
        if kind not in lists:
            continue
        path = root / f"{split}.jsonl"
        texts, labels = _read_rows(path, config.text_field(), config.label_column)
        pools[kind] = _pool(kind, texts, labels, lists[kind], str(path))
    return _collection(pools["train"], pools.get("validation"), pools.get("test"))


def load_class_pools(config: DataConfig) -> TaskCollection:
    """Any `datasets` source (hub id, CSV, JSONL, ...) without domains: tasks draw classes from pools of
    training, validation and test classes (lists or files of names; the training classes default to every
    class not listed for validation or test)."""
    ds = _load_dataset(config)
    where = config.path
    for kind, column in (("text_column", config.text_field()), ("label_column", config.label_column)):
        if column not in ds.column_names:
            raise DataError(
                f"{where}: no column '{column}' (data.{kind}).{did_you_mean(column, ds.column_names)} "
                f"Columns: {', '.join(ds.column_names)}."
            )
    texts = ds[config.text_field()]
    labels = [str(v).strip() if v is not None else "" for v in ds[config.label_column]]
    for i, (text, label) in enumerate(zip(texts, labels)):
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{where}, row {i}: the text ('{config.text_field()}') is empty. Remove the row or fill in the text."
            )
        if not label:
            raise DataError(f"{where}, row {i}: the label ('{config.label_column}') is missing.")
    known = sorted(set(labels))
    lists = {
        kind: read_class_list(value, f"{kind}_classes")
        for kind in ("validation", "test")
        if (value := getattr(config, f"{kind}_classes")) is not None
    }
    if not lists.get("test"):
        raise DataError(
            f"{where}: tasks are drawn from classes, so data.test_classes must name the held-out test classes "
            "(a list, or a file of names)."
        )
    for kind, names in lists.items():
        for name in names:
            if name not in known:
                raise DataError(
                    f"{where}: {kind} class {shown(name)} is not a label of the data.{did_you_mean(name, known)}"
                )
    held = {n for names in lists.values() for n in names}
    train = (
        read_class_list(config.train_classes, "train_classes")
        if config.train_classes is not None
        else [c for c in known if c not in held]
    )
    lists = {"train": train, **lists}
    _check_disjoint(lists, where)
    texts = [t.strip() for t in texts]
    pools = {kind: _pool(kind, texts, labels, names, where) for kind, names in lists.items()}
    return _collection(pools["train"], pools.get("validation"), pools.get("test"))
