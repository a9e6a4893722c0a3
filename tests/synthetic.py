"""Synthetic multi-domain sentiment data and a tiny BERT, built locally (no download).

Every domain shares the same sentiment words (the structure a meta-learner can pick up) and has
its own topic words (noise). Labels: 'negative' / 'positive'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

POSITIVE = ["good", "great", "love", "excellent", "happy", "perfect", "nice", "best"]
NEGATIVE = ["bad", "poor", "hate", "awful", "broken", "worst", "sad", "waste"]
FILLER = ["the", "a", "it", "this", "is", "was", "and", "very", "product", "item"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def topic_words(domain: int) -> list[str]:
    return [f"topic{domain}w{i}" for i in range(6)]


def vocabulary(n_domains: int = 12) -> list[str]:
    words = SPECIAL + POSITIVE + NEGATIVE + FILLER
    for d in range(n_domains):
        words += topic_words(d)
    return words


def make_examples(domain: int, n: int, seed: int, positive_ratio: float = 0.5) -> list[dict]:
    rng = np.random.default_rng([seed, domain])
    rows = []
    for i in range(n):
        label = int(rng.random() < positive_ratio)
        sentiment = POSITIVE if label else NEGATIVE
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(topic_words(domain), 3)) + list(rng.choice(sentiment, 2))
        rng.shuffle(words)
        rows.append(
            {"text": " ".join(words), "label": "positive" if label else "negative", "domain": f"domain{domain}"}
        )
    return rows


def write_review_json(path: Path, n_domains: int = 8, n_per_domain: int = 60, seed: int = 0) -> Path:
    rows = [r for d in range(n_domains) for r in make_examples(d, n_per_domain, seed)]
    path.write_text(json.dumps({"data": rows}), encoding="utf-8")
    return path


def write_arsc_folder(
    root: Path,
    train_domains=("alpha", "beta", "gamma"),
    target_domains=("delta",),
    n_train=40,
    n_dev=20,
    n_test=30,
    seed=0,
) -> Path:
    """A miniature ARSC folder: same file layout and label convention (1 / -1)."""
    root.mkdir(parents=True, exist_ok=True)
    domains = list(train_domains) + list(target_domains)
    (root / "workspace.filtered.list").write_text("\n".join(domains) + "\n")
    (root / "workspace.target.list").write_text("\n".join(target_domains) + "\n")
    for d_i, domain in enumerate(domains):
        for t_i, threshold in enumerate(("t2", "t4", "t5")):
            for s_i, (split, n) in enumerate((("train", n_train), ("dev", n_dev), ("test", n_test))):
                if domain in target_domains and split == "train":
                    rows = make_examples(d_i, 200, seed + 100 * t_i + s_i)
                    pos = [r for r in rows if r["label"] == "positive"][:5]
                    neg = [r for r in rows if r["label"] == "negative"][:5]
                    rows = pos + neg
                else:
                    rows = make_examples(d_i, n, seed + 100 * t_i + s_i)
                lines = [f"{r['text']}\t{1 if r['label'] == 'positive' else -1}" for r in rows]
                (root / f"{domain}.{threshold}.{split}").write_text("\n".join(lines) + "\n")
    return root


def build_tiny_model(
    out_dir: Path, n_domains: int = 12, seed: int = 0, labels=("negative", "positive"), words: list[str] | None = None
) -> Path:
    """A randomly initialised 2-layer BERT with a word-level vocabulary of the synthetic words (``words``:
    another vocabulary, e.g. :func:`intent_vocabulary`)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    words = words or vocabulary(n_domains)
    # transformers 5's BertTokenizerFast takes the vocabulary itself (a vocab_file argument is ignored).
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    assert len(tokenizer) == len(words)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def make_rows(
    n_domains: int = 4, n_per_domain: int = 30, seed: int = 0, domain_names: list[str] | None = None
) -> list[dict]:
    """Rows of several domains; ``domain_names`` renames domain0, domain1, ... in order."""
    rows = [r for d in range(n_domains) for r in make_examples(d, n_per_domain, seed)]
    if domain_names is not None:
        rename = {f"domain{i}": name for i, name in enumerate(domain_names)}
        rows = [{**r, "domain": rename[r["domain"]]} for r in rows]
    return rows


def write_table(path: Path, rows: list[dict], columns: dict[str, str] | None = None) -> Path:
    """Write ``rows`` as .csv, .jsonl or .parquet (by suffix), renaming keys with ``columns``
    (e.g. ``{"text": "review"}``) to exercise configurable column names."""
    import datasets

    columns = columns or {}
    renamed = [{columns.get(k, k): v for k, v in r.items()} for r in rows]
    ds = datasets.Dataset.from_list(renamed)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        ds.to_csv(str(path), index=False)
    elif suffix == ".jsonl":
        ds.to_json(str(path), lines=True)
    elif suffix == ".parquet":
        ds.to_parquet(str(path))
    else:
        raise ValueError(f"unsupported suffix {suffix}")
    return path


# ------------------------------------------------------------------------------ new classes (intents)
SPLITS = (("train", 6), ("valid", 4), ("test", 5))  # classes per split, disjoint


def intent_words(c: int) -> list[str]:
    return [f"intent{c}w{i}" for i in range(3)]


def intent_vocabulary(n_classes: int = 15) -> list[str]:
    return SPECIAL + FILLER + [w for c in range(n_classes) for w in intent_words(c)]


def write_class_splits(root: Path, n_per_class: int = 12, seed: int = 0, splits=SPLITS) -> Path:
    """A miniature few-shot intent split (the layout of ../shared/data/intent/<DATASET>/few_shot/<NN>):
    train/valid/test.jsonl with sentence/label and labels.<split>.txt; each class is named by its own
    keywords, so a text's class is which keywords it holds."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c = 0
    for split, n_classes in splits:
        names, rows = [], []
        for _ in range(n_classes):
            name = f"intent_{c}"
            names.append(name)
            for _ in range(n_per_class):
                words = list(rng.choice(FILLER, 3)) + list(rng.choice(intent_words(c), 2))
                rng.shuffle(words)
                rows.append({"sentence": " ".join(words), "label": name})
            c += 1
        (root / f"labels.{split}.txt").write_text("\n".join(names) + "\n")
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
