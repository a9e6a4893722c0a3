"""The new-classes benchmark: few-shot intent detection on classes no training step saw.

For each class split (BANKING77 and OOS in ../shared/data/intent, splits 01-05) the kshot algorithms
are meta-trained once each on the split's training classes (model selection on its validation
classes), and every trained model is then scored in four settings, with the alternatives a user
would pick measured in the same run on the very same episodes (each setting's episodes are drawn
once, by the seeded sampler, from the test classes):

- 5-way 1-shot and 5-way 5-shot, 600 episodes, Q = 5 queries a class (the literature's protocol);
- all-way 1-shot and all-way 5-shot, 100 episodes (every test class at once: what a deployment faces).

Alternatives: the frozen body with nearest prototypes, logistic regression on frozen embeddings,
SetFit (on the first ``setfit_episodes`` episodes of each setting; it trains per episode) and any
algorithm given, such as ``transfer``. Results: ``<out>/<dataset>-<split>/summary.json`` per split (and
``results.json`` there, the algorithms' per-episode scores), ``<out>/results.json`` and
``<out>/results.md`` over all.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import KshotConfig, Params
from ..errors import ConfigError
from .runner import BenchmarkSpec, run_benchmark
from .settings import SETTINGS

logger = logging.getLogger(__name__)


@dataclass
class NewClassSpec:
    config: KshotConfig  # data.path is replaced by each split's folder
    params: Params
    algorithms: list[str]
    splits: list[tuple[str, str]]  # (name, folder)
    out_dir: Path
    budget_minutes: float | None = None
    budget_steps: int | None = None
    algorithm_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: list[str] = field(default_factory=lambda: ["frozen_prototypes", "logistic_regression"])
    setfit_episodes: dict[str, int] = field(default_factory=dict)
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    episodes: int | None = None  # instead of each setting's own count (a quick look; the protocol's are above)

    def __post_init__(self) -> None:
        for name in self.settings:
            if name not in SETTINGS:
                raise ConfigError(f"Unknown setting {name!r}; choose from {', '.join(SETTINGS)}.")

    def setting_config(self, folder: str, setting: str, output_dir: Path) -> KshotConfig:
        raw = self.config.to_dict()
        raw["data"] = {**raw["data"], "path": folder, **SETTINGS[setting]}
        if self.episodes is not None:
            raw["data"]["eval_episodes"] = self.episodes
        raw["output_dir"] = str(output_dir)
        return KshotConfig.from_dict(raw)


def run_split(spec: NewClassSpec, name: str, folder: str) -> dict[str, Any]:
    """Meta-train and score every algorithm, then score the baselines on the same episodes."""
    out = spec.out_dir / name
    main, *others = spec.settings
    train_config = spec.setting_config(folder, main, out / "models")
    extras = {s: spec.setting_config(folder, s, out / "models") for s in others}
    results: dict[str, Any] = {}
    if spec.algorithms:
        bench = BenchmarkSpec(
            train_config,
            spec.params,
            spec.algorithms,
            out,
            spec.budget_minutes,
            spec.budget_steps,
            spec.algorithm_params,
            extras,
        )
        for algorithm, r in run_benchmark(bench).items():
            results[algorithm] = _by_setting(r, main)
    for method in spec.baselines:
        results[method] = run_baseline(spec, method, folder, out, names=False)
        if spec.params.label_names_as_support:
            # What the names alone give, without meta-training: the row to beat for a recipe that uses them
            # (SetFit too: it trains on each episode's support set, names included, on the same episodes).
            results[f"{method}+names"] = run_baseline(spec, method, folder, out, names=True)
        _write(out / "summary.json", results)  # results.json beside it: the algorithms' per-episode scores
    return results


def _by_setting(entry: dict[str, Any], main: str) -> dict[str, Any]:
    if "error" in entry:
        return {"error": entry["error"]}
    settings = {main: entry["test"]["mean"], **{k: v["mean"] for k, v in entry.get("extra", {}).items()}}
    return {
        "settings": settings,
        "train_seconds": entry["train_seconds"],
        "eval_seconds": entry["eval_seconds"],
        "steps": entry["steps"],
        "best_step": entry["best_step"],
    }


def run_baseline(spec: NewClassSpec, method: str, folder: str, out: Path, names: bool = False) -> dict[str, Any]:
    """``method`` on every setting's episodes; ``names``: with each class's name as one more support
    example (``Params.label_names_as_support``; the episodes' draws are the same either way)."""
    from ..models import load_tokenizer, resolve_model_name
    from ..training.setup import build_tasks
    from .baselines import evaluate_baseline

    model = resolve_model_name(spec.config.model.name_or_path)
    tokenizer = load_tokenizer(model)
    params = replace(spec.params, label_names_as_support=names)
    settings, t0 = {}, time.perf_counter()
    for setting in spec.settings:
        config = spec.setting_config(folder, setting, out / "models")
        # The same episodes as the algorithms': drawn by the same sampler from the same seed.
        tasks = build_tasks(config, params, tokenizer, with_training=False).test
        limit = spec.setfit_episodes.get(setting) if method == "setfit" else None
        if limit == 0:
            continue
        r = evaluate_baseline(method, tasks, model, max_length=spec.params.max_length, max_episodes=limit)
        settings[setting] = r["mean"]
        logger.info("%s%s %s: %.2f", method, "+names" if names else "", setting, 100 * r["mean"]["accuracy"])
    return {"settings": settings, "train_seconds": 0.0, "eval_seconds": time.perf_counter() - t0}


def run_new_classes(spec: NewClassSpec) -> dict[str, Any]:
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    everything: dict[str, Any] = {}
    for name, folder in spec.splits:
        logger.info("new-classes benchmark: %s (%s)", name, folder)
        everything[name] = run_split(spec, name, folder)
        _write(spec.out_dir / "results.json", everything)
    (spec.out_dir / "results.md").write_text(format_new_classes(everything, spec.settings) + "\n", encoding="utf-8")
    return everything


def format_new_classes(results: dict[str, Any], settings: list[str]) -> str:
    """One table per split and, over several splits, the mean: accuracy ± 95% CI (macro-F1)."""
    lines: list[str] = []
    head = "| method | " + " | ".join(settings) + " | train s |"
    rule = "|---|" + "---|" * (len(settings) + 1)
    for split, methods in results.items():
        lines += [f"\n**{split}** (accuracy ± 95% CI over episodes, macro-F1)\n", head, rule]
        for method, r in methods.items():
            if "error" in r:
                lines.append(f"| {method} | failed: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
                continue
            cells = [_cell(r["settings"].get(s)) for s in settings]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} |")
    if len(results) > 1:
        lines += ["\n**mean over splits** (accuracy)\n", head, rule]
        names = dict.fromkeys(m for methods in results.values() for m in methods)
        for method in names:
            cells = []
            for s in settings:
                vals = [
                    r[method]["settings"][s]["accuracy"]
                    for r in results.values()
                    if s in r.get(method, {}).get("settings", {})
                ]
                cells.append(f"{100 * sum(vals) / len(vals):.1f} ({len(vals)})" if vals else "—")
            lines.append(f"| {method} | " + " | ".join(cells) + " | |")
    return "\n".join(lines).strip()


def _cell(mean: dict[str, Any] | None) -> str:
    if not mean:
        return "—"
    episodes = mean.get("tasks", mean.get("episodes"))
    return f"{100 * mean['accuracy']:.1f} ± {100 * mean.get('accuracy_ci95', 0):.1f} ({mean['macro_f1']:.3f})" + (
        f" [{episodes} ep]" if episodes is not None and episodes < 100 else ""
    )


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
