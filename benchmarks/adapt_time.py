"""Time `kshot adapt` on a new 27-class task from 5 examples a class (issue 15's ≤ 5 s goal).

    .venv/bin/python benchmarks/adapt_time.py MODEL_DIR [--split ../shared/data/intent/BANKING77/few_shot/01] \
        [--set params.metric_finetune=true ...]

Writes a support CSV of 5 examples of each test class of the split (the first five in file order: the
timing reads no score), then times `adapt_model` (load, tokenize, adapt, save) and, separately, the
adaptation alone, three times each; prints the median seconds. No accuracy is computed.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--split", default="../shared/data/intent/BANKING77/few_shot/01")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None, help="adaptation steps (default: the model's eval_inner_steps)")
    ap.add_argument("--set", action="append", default=[], help="a params override, as `kshot adapt --set`")
    args = ap.parse_args()
    from kshot.config import apply_overrides
    from kshot.training import adapt_model

    overrides: dict = {}
    apply_overrides({}, overrides, args.set)

    rows, seen = [], {}
    for line in (Path(args.split) / "test.jsonl").read_text().splitlines():
        r = json.loads(line)
        if seen.get(r["label"], 0) < args.shots:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            rows.append({"text": r["sentence"], "label": r["label"]})
    with tempfile.TemporaryDirectory() as tmp:
        support = Path(tmp) / "support.csv"
        with support.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            adapt_model(args.model, support, Path(tmp) / f"out{i}", steps=args.steps, params_overrides=overrides)
            times.append(time.perf_counter() - t0)
    print(
        f"classes={len(seen)} examples={len(rows)} kshot adapt (load+tokenize+adapt+save) "
        f"median {statistics.median(times):.2f} s, runs {', '.join(f'{t:.2f}' for t in times)}"
    )


if __name__ == "__main__":
    main()
