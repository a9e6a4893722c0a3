"""Benchmark output: a markdown table, and a PNG of accuracy against training time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_markdown(results: dict[str, Any]) -> str:
    ok = {k: r for k, r in results.items() if "error" not in r}
    if not ok:
        return "(no successful runs)"
    tasks = list(next(iter(ok.values()))["test"]["tasks"])
    head = ["algorithm", "mean acc", "mean macro-F1", "steps", "train s", "eval s", "peak RSS MiB"] + tasks
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in sorted(ok.items(), key=lambda kv: -kv[1]["test"]["mean"]["accuracy"]):
        mean = r["test"]["mean"]
        cells = [
            name,
            f"{100 * mean['accuracy']:.2f}",
            f"{mean['macro_f1']:.3f}",
            str(r["steps"]),
            f"{r['train_seconds']:.0f}",
            f"{r['eval_seconds']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        cells += [
            f"{100 * r['test']['tasks'][t]['accuracy']:.1f} / {r['test']['tasks'][t]['macro_f1']:.2f}" for t in tasks
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
    for name, r in ok.items():
        for extra, res in r.get("extra", {}).items():
            lines.append(
                f"\n{name} on {extra}: accuracy {100 * res['mean']['accuracy']:.2f},"
                f" macro-F1 {res['mean']['macro_f1']:.3f}"
            )
    return "\n".join(lines)


def plot_accuracy_vs_time(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        if "error" in r:
            continue
        x, y = r["train_seconds"] / 60, 100 * r["test"]["mean"]["accuracy"]
        ax.scatter([x], [y], s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xlabel("meta-training time (minutes)")
    ax.set_ylabel("mean test accuracy (%)")
    ax.set_title("kshot benchmark: accuracy vs training time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
