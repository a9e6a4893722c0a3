"""``kshot benchmark``: compare algorithms under one budget on ARSC or the user's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError


def benchmark(
    dataset: Annotated[
        str, typer.Argument(help="'arsc' (the bundled ARSC set-up), or 'custom' with -c config.yaml.")
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
) -> None:
    """Meta-train each algorithm under the same budget; evaluate all on the test tasks."""
    from ..benchmark import BenchmarkSpec, format_markdown, plot_accuracy_vs_time, run_benchmark
    from ..config import load_config, load_yaml
    from .logs import setup_logging
    from .main import _load

    if dataset not in ("arsc", "custom"):
        raise ConfigError(f"Unknown benchmark '{dataset}'. Choose 'arsc', or 'custom' with -c config.yaml.")
    if dataset == "custom" and config is None:
        raise ConfigError("'kshot benchmark custom' needs -c config.yaml describing your data.")
    cfg, prm = _load(config, params, set_)
    setup_logging(cfg.logging.log_dir, cfg.logging.level)
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    folder = (
        params_dir
        if params_dir is not None
        else (Path("configs/benchmark") if Path("configs/benchmark").is_dir() else None)
    )
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
    spec = BenchmarkSpec(cfg, prm, names, out, budget_minutes, budget_steps, per_algorithm, extras)
    results = run_benchmark(spec)
    table = format_markdown(results)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    plot_accuracy_vs_time(results, out / "accuracy_vs_time.png")
    typer.echo(table)
    typer.echo(f"\nWrote {out / 'results.json'}, {out / 'results.md'} and {out / 'accuracy_vs_time.png'}.")
