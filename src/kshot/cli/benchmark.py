"""``kshot benchmark``: compare algorithms under one budget on ARSC or the user's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError, unknown_choice


def benchmark(
    dataset: Annotated[
        str,
        typer.Argument(
            help="'arsc' (the bundled ARSC set-up), 'intent' (new classes: BANKING77 and OOS class splits, four "
            "settings, with baselines), or 'custom' with -c config.yaml."
        ),
    ] = "arsc",
    algorithms: Annotated[str, typer.Option("--algorithms", help="Comma-separated algorithm names.")] = "reptile",
    budget_minutes: Annotated[
        Optional[float], typer.Option("--budget-minutes", help="Meta-training wall-clock budget per algorithm.")
    ] = None,
    budget_steps: Annotated[
        Optional[int], typer.Option("--budget-steps", help="Outer-step budget per algorithm (instead of minutes).")
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option("-c", "--config", help="config.yaml (data, model); default: ARSC with the bundled model."),
    ] = None,
    params: Annotated[
        Optional[Path], typer.Option("-p", "--params", help="Base params.yaml shared by all algorithms.")
    ] = None,
    params_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--params-dir", help="Folder of <algorithm>.yaml params overrides (default: configs/benchmark if present)."
        ),
    ] = None,
    extra_config: Annotated[
        Optional[list[str]],
        typer.Option("--extra-config", help="NAME=config.yaml whose test tasks are also evaluated (repeatable)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: results.json, results.md, accuracy_vs_time.png, models/.")
    ] = Path("outputs/benchmark"),
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override for every algorithm, e.g. --set params.eval_inner_steps=10."),
    ] = None,
    data_root: Annotated[
        Path, typer.Option("--data-root", help="intent: folder of <DATASET>/few_shot/<NN> class splits.")
    ] = Path("../shared/data/intent"),
    datasets: Annotated[str, typer.Option("--datasets", help="intent: comma-separated datasets.")] = "BANKING77,OOS",
    splits: Annotated[str, typer.Option("--splits", help="intent: comma-separated split numbers.")] = "01,02,03,04,05",
    baselines: Annotated[
        str,
        typer.Option(
            "--baselines", help="intent: comma-separated baselines (frozen_prototypes, logistic_regression, setfit)."
        ),
    ] = "frozen_prototypes,logistic_regression",
    setfit_episodes: Annotated[
        str,
        typer.Option(
            "--setfit-episodes",
            help="intent: SetFit episodes per setting (it trains per episode), as 5w1s,5w5s,all1,all5 counts.",
        ),
    ] = "8,8,1,1",
) -> None:
    """Meta-train each algorithm under the same budget; evaluate all on the test tasks."""
    if dataset not in ("arsc", "custom", "intent"):
        raise ConfigError(f"Unknown benchmark '{dataset}'. Choose 'arsc', 'intent', or 'custom' with -c config.yaml.")
    if dataset == "custom" and config is None:
        raise ConfigError("'kshot benchmark custom' needs -c config.yaml describing your data.")
    if dataset == "intent":  # checked before torch loads: a typo costs a second, not a split's training
        folders, chosen, counts = _intent_options(data_root, datasets, splits, baselines, setfit_episodes)

    from ..benchmark import BenchmarkSpec, format_markdown, plot_accuracy_vs_time, run_benchmark
    from ..config import KshotConfig, load_config, load_yaml
    from .logs import setup_logging
    from .main import _load

    cfg, prm = _load(config, params, set_)
    setup_logging(cfg.logging.log_dir, cfg.logging.level)
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    default_dir = Path("configs/intent" if dataset == "intent" else "configs/benchmark")
    folder = params_dir if params_dir is not None else (default_dir if default_dir.is_dir() else None)
    per_algorithm = {}
    for name in names:
        if folder is not None and (folder / f"{name}.yaml").is_file():
            per_algorithm[name] = load_yaml(folder / f"{name}.yaml")
    extras = {}
    for item in extra_config or []:
        if "=" not in item:
            raise ConfigError(f"--extra-config '{item}' must look like NAME=path/to/config.yaml.")
        name, path = item.split("=", 1)
        extras[name] = load_config(path)
    if dataset == "intent":
        from ..benchmark.new_classes import NewClassSpec, format_new_classes, run_new_classes

        if config is None:  # the intent default: class splits with the bundled model
            cfg = KshotConfig.from_dict({"data": {"format": "class_splits"}, "logging": cfg.logging.to_dict()})
        spec = NewClassSpec(cfg, prm, names, folders, out, budget_minutes, budget_steps, per_algorithm, chosen, counts)
        typer.echo(format_new_classes(run_new_classes(spec), spec.settings))
        typer.echo(f"\nWrote {out / 'results.json'} and {out / 'results.md'}.")
        return
    spec = BenchmarkSpec(cfg, prm, names, out, budget_minutes, budget_steps, per_algorithm, extras)
    results = run_benchmark(spec)
    table = format_markdown(results)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    plot_accuracy_vs_time(results, out / "accuracy_vs_time.png")
    typer.echo(table)
    typer.echo(f"\nWrote {out / 'results.json'}, {out / 'results.md'} and {out / 'accuracy_vs_time.png'}.")


def _intent_options(data_root: Path, datasets: str, splits: str, baselines: str, setfit_episodes: str):
    """(split folders as (name, path), baseline names, SetFit episodes per setting) from the intent options."""
    from ..benchmark.settings import BASELINES, SETTINGS

    counts = [c.strip() for c in setfit_episodes.split(",")]
    if len(counts) != len(SETTINGS) or not all(c.isdigit() for c in counts):
        raise ConfigError(f"--setfit-episodes needs {len(SETTINGS)} counts (for {', '.join(SETTINGS)}), e.g. 8,8,1,1.")
    folders = []
    for ds in [d.strip() for d in datasets.split(",") if d.strip()]:
        for split in [s.strip() for s in splits.split(",") if s.strip()]:
            folder = data_root / ds / "few_shot" / split
            if not folder.is_dir():
                raise ConfigError(f"No class split at {folder} (--data-root, --datasets, --splits).")
            folders.append((f"{ds}-{split}", str(folder)))
    chosen = [b.strip() for b in baselines.split(",") if b.strip()]
    for name in chosen:
        if name not in BASELINES:
            raise ConfigError(unknown_choice("baseline (--baselines)", name, BASELINES))
    return folders, chosen, dict(zip(SETTINGS, map(int, counts)))
