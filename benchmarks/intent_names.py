"""The frozen body with class names in the prototypes, on a split's validation classes (never its test ones).

    python benchmarks/intent_names.py BANKING77 01

The look taken before `params.label_names_as_support` was built: all-way 1-shot and 5-shot episodes (Q = 5,
seeded) over the validation classes, the frozen default body (mean-pooled, normalised), a class's
prototype the normalised mean of its support embeddings plus ``w`` times its name's embedding
(``card_arrival`` → "card arrival"), for several ``w``; and the names alone (zero-shot).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kshot.benchmark.baselines import embed_texts
from kshot.data.tasks import class_name_text
from kshot.models.loading import default_model_path

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="BANKING77 or OOS")
    parser.add_argument("split", help="01 .. 05")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/intent"))
    parser.add_argument("--part", choices=("train", "valid"), default="valid", help="never the test classes")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    root = args.data_root / args.dataset / "few_shot" / args.split
    rows = [json.loads(line) for line in (root / f"{args.part}.jsonl").open()]
    classes = [c.strip() for c in (root / f"labels.{args.part}.txt").open() if c.strip()]
    names = [class_name_text(c) for c in classes]
    table = embed_texts([r["sentence"] for r in rows] + names, str(default_model_path()), max_length=64)
    by_class = {c: np.stack([table[r["sentence"]] for r in rows if r["label"] == c]) for c in classes}
    name_emb = np.stack([table[n] for n in names])
    rng = np.random.default_rng(0)
    for shots in (1, 5):
        acc: dict[float, list[float]] = {w: [] for w in WEIGHTS}
        for _ in range(args.episodes):
            support, queries = [], []
            for c in classes:
                idx = rng.permutation(len(by_class[c]))
                support.append(by_class[c][idx[:shots]].mean(0))
                queries.append(by_class[c][idx[shots : shots + 5]])
            mean = np.stack(support)
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            for w in WEIGHTS:
                protos = mean + w * name_emb
                protos /= np.linalg.norm(protos, axis=1, keepdims=True)
                acc[w].append(np.mean([np.mean(np.argmax(q @ protos.T, 1) == i) for i, q in enumerate(queries)]))
        cells = ", ".join(f"w={w}: {100 * np.mean(v):.1f}" for w, v in acc.items())
        print(f"{args.dataset}-{args.split} {args.part} classes, all-way {shots}-shot: {cells}")
    zero = np.mean([np.mean(np.argmax(by_class[c] @ name_emb.T, 1) == i) for i, c in enumerate(classes)])
    print(f"names alone (zero-shot, every example): {100 * zero:.1f}")


if __name__ == "__main__":
    main()
