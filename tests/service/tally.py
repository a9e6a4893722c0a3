"""Counts of what the attack, fault and load tests tried and what held, printed at the end of the run.

The table in BENCHMARKS.md ("Service: attacks, faults, load") is this summary of
`scripts/test.sh tests/service/test_attacks.py tests/service/test_faults.py tests/service/test_load.py`.
"""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()
ROWS = (
    ("attacks", "tried", "refused, nothing written, read or executed"),
    ("faults", "injected", "survived, nothing acknowledged lost"),
    ("requests", "under load", "failed"),
)


def tried(kind: str, n: int = 1) -> None:
    TALLY[(kind, "tried")] += n


def held(kind: str, n: int = 1) -> None:
    TALLY[(kind, "held")] += n


def summary() -> list[str]:
    lines = []
    for kind, tried_word, held_word in ROWS:
        if TALLY[(kind, "tried")]:
            lines.append(f"{kind}: {TALLY[(kind, 'tried')]} {tried_word} / {TALLY[(kind, 'held')]} {held_word}")
    return lines
