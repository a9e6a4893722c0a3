"""Merge the results of several `kshot benchmark intent` runs (one per split) into one report.

    python benchmarks/intent_table.py outputs/bench-intent/banking77-0[2-5]

Each folder holds the runner's results.json ({split: {method: ...}}); the report is each split's table
and, over the splits given, the mean accuracy per method and setting (with how many splits it covers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kshot.benchmark.new_classes import SETTINGS, format_new_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    merged: dict = {}
    for folder in args.folders:
        merged.update(json.loads((folder / "results.json").read_text()))
    print(format_new_classes(merged, list(SETTINGS)))


if __name__ == "__main__":
    main()
