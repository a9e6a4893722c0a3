"""Merge the results of several `kshot benchmark intent` runs (one per split) into one report.

    python benchmarks/intent_table.py outputs/bench-intent/banking77-0[2-5]

Each folder holds the runner's results.json ({split: {method: ...}}); the report is each split's table
and, over the splits given, the mean accuracy per method and setting (with how many splits it covers).
Then SetFit (and SetFit with the class names, where it ran), paired: it trains per episode, so it runs on
the first few episodes of a setting only; kshot's algorithms are scored on those same episodes from their
per-episode results (``<split>/results.json``).
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
    print("\n**SetFit against kshot on the same episodes** (accuracy, mean over the episodes SetFit ran)\n")
    print("| split | setting | SetFit | episodes | score | " + " | ".join(_algorithms(merged)) + " |")
    print("|---|---|---|---|---|" + "---|" * len(_algorithms(merged)))
    for folder in args.folders:
        for split, methods in json.loads((folder / "results.json").read_text()).items():
            runs = json.loads((folder / split / "results.json").read_text())["results"]
            for setfit in ("setfit", "setfit+names"):
                for setting, mean in (methods.get(setfit, {}).get("settings") or {}).items():
                    n = mean["episodes"]
                    cells = [_first_episodes(runs.get(a), setting, n) for a in _algorithms(merged)]
                    score = f"{100 * mean['accuracy']:.1f}"
                    print(f"| {split} | {setting} | {setfit} | {n} | {score} | " + " | ".join(cells) + " |")


def _algorithms(merged: dict) -> list[str]:
    baselines = {"frozen_prototypes", "logistic_regression", "setfit"}
    return list(
        dict.fromkeys(m for methods in merged.values() for m in methods if m.removesuffix("+names") not in baselines)
    )


def _first_episodes(run: dict | None, setting: str, n: int) -> str:
    """The mean accuracy of an algorithm's first ``n`` episodes of ``setting`` (test#0 .. test#n-1)."""
    if not run or "test" not in run:
        return "—"
    results = run["test"] if setting == next(iter(SETTINGS)) else (run.get("extra") or {}).get(setting)
    if not results:
        return "—"
    accuracies = [results["tasks"][f"test#{i}"]["accuracy"] for i in range(n) if f"test#{i}" in results["tasks"]]
    return f"{100 * sum(accuracies) / len(accuracies):.1f}" if len(accuracies) == n else "—"


if __name__ == "__main__":
    main()
