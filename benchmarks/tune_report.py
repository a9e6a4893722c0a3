"""Report a `kshot tune` study (and a warm-started second one): best value, trials to reach it, pruning.

    python benchmarks/tune_report.py --db sqlite:///kshot_attempts.db anil-arsc [anil-arsc-warm] [--steps]

For each study: trials by state, the best value and the trial that reached it, the meta-training wall
time of its trials and what pruning saved (the steps a pruned trial did not run, at its own rate). With
a second (warm-started) study: how many of its own trials (warm-start trials not counted) it needed to
reach the first study's best value, against the first study's count. ``--steps``: a Markdown table of every
trial, its sampled params and its mean validation accuracy / macro-F1 at each periodic validation; and for
each pruned trial, its last report against the median that the interpolating progress pruner reads there from
the trials completed before it (a study pruned by Optuna's own median pruner read only the peers reported there).
"""

from __future__ import annotations

import argparse
from statistics import median

from optuna.trial import TrialState

from kshot.tracking import AttemptStore, means_by_step
from kshot.tuning import optuna_storage
from kshot.tuning.pruners import peer_values
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


def pruned_lines(study) -> list[str]:
    """Each pruned trial's last report and the median of earlier completed trials' values at that share."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    lines = []
    for t in trials:
        if t.state != TrialState.PRUNED or not t.intermediate_values:
            continue
        share = max(t.intermediate_values)
        earlier = [p for p in trials if p.state == TrialState.COMPLETE and p.number < t.number]
        peers = peer_values(earlier, share)
        direct = sum(share in p.intermediate_values for p in earlier)
        middle = f"{median(peers):.4f}" if peers else "none"
        lines.append(
            f"  pruned trial {t.number} at {share}: {t.intermediate_values[share]:.4f} against the median {middle} "
            f"of {len(peers)} completed peers ({direct} reported there, the rest read between their reports)"
        )
    return lines


def steps_table(store: AttemptStore, study, attempts) -> str:
    by_name = {a.name: a for a in attempts}
    trials = sorted(own_trials(study), key=lambda t: t.number)
    names = sorted({k for t in trials for k in t.params})
    # Mean validation accuracy (in percent here) and macro-F1 over the tasks, at each step a trial was scored.
    scored = {
        t.number: means_by_step(store.evaluations(by_name[t.user_attrs["attempt"]].id, "validation")) for t in trials
    }
    steps = sorted({s for v in scored.values() for s in v})
    lines = [
        "| trial | " + " | ".join(names) + " | " + " | ".join(f"step {s}" for s in steps) + " | state, wall time |"
    ]
    lines.append("|" + "---|" * (len(names) + len(steps) + 2))
    for t in trials:
        attempt = by_name[t.user_attrs["attempt"]]
        values = [f"{t.params[k]:.3g}" if isinstance(t.params.get(k), float) else str(t.params.get(k)) for k in names]
        cells = [
            f"{100 * scored[t.number][s][0]:.2f} / {scored[t.number][s][1]:.3f}" if s in scored[t.number] else ""
            for s in steps
        ]
        state = f"{attempt.status}, {attempt.duration_seconds or 0:.0f} s"
        lines.append(f"| {t.number} | " + " | ".join(values + cells) + f" | {state} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--db", default=None)
    parser.add_argument("--steps", action="store_true", help="print each trial's validation at every step")
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
        for line in pruned_lines(study):
            print(line)
        if args.steps:
            print(steps_table(store, study, attempts))


if __name__ == "__main__":
    main()
