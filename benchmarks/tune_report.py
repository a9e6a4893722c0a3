"""Report a `kshot tune` study (and a warm-started second one): best value, trials to reach it, pruning.

    python benchmarks/tune_report.py --db sqlite:///kshot_attempts.db anil-arsc [anil-arsc-warm]

For each study: trials by state, the best value and the trial that reached it, the meta-training wall
time of its trials and what pruning saved (the steps a pruned trial did not run, at its own rate). With
a second (warm-started) study: how many of its own trials (warm-start trials not counted) it needed to
reach the first study's best value, against the first study's count.
"""

from __future__ import annotations

import argparse

from kshot.tracking import AttemptStore
from kshot.tuning import optuna_storage
from kshot.tuning.search import summarize
from kshot.tuning.study import open_study


def own_trials(study):
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("warm_start")]


def trials_to_reach(trials, value: float) -> int | None:
    """1-based count of the study's own trials until one reaches ``value`` (None: never)."""
    for i, t in enumerate(sorted(trials, key=lambda t: t.number), 1):
        if t.value is not None and t.state.name == "COMPLETE" and t.value >= value:
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    store = AttemptStore(args.db)
    storage = optuna_storage(store.url)
    first_best = None
    for name in args.studies:
        study, spec = open_study(storage, name, None)
        summary = summarize(store, study, spec)
        attempts = store.list_attempts(study=name, limit=None)[0]
        seconds = sum(a.duration_seconds or 0 for a in attempts)
        best = summary["best"]
        print(
            f"study {name}: {summary['counts']}; trials' wall time {seconds / 60:.1f} min, "
            f"pruning saved about {summary['pruning_saved_seconds'] / 60:.1f} min"
        )
        if best:
            print(f"  best {best['value']:.4f} (trial {best['number']}, {best['attempt']}): {best['params']}")
        if first_best is None and best:
            first_best = best["value"]
            print(f"  own trials to reach its best: {trials_to_reach(own_trials(study), first_best)}")
        elif first_best is not None:
            print(
                f"  own trials to reach the first study's best ({first_best:.4f}): "
                f"{trials_to_reach(own_trials(study), first_best)}"
            )


if __name__ == "__main__":
    main()
