"""The ``kshot`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import KshotError
from .attempts import DbOpt, NameOpt, NoTrackOpt
from .attempts import app as attempts_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Few-shot text classification by meta-learning.")
app.add_typer(attempts_app, name="attempts")

ConfigOpt = Annotated[
    Optional[Path], typer.Option("-c", "--config", help="config.yaml: data, model, output_dir, logging.")
]
ParamsOpt = Annotated[
    Optional[Path], typer.Option("-p", "--params", help="params.yaml: algorithm and hyperparameters.")
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override, e.g. --set params.inner_lr=1e-4 (repeatable).")
]


def _load(config: Path | None, params: Path | None, overrides: list[str] | None):
    from ..config import KshotConfig, Params, apply_overrides, load_yaml
    from ..errors import ConfigError

    raw_c = load_yaml(config) if config else {}
    raw_p = load_yaml(params) if params else {}
    apply_overrides(raw_c, raw_p, overrides or [])
    try:
        cfg = KshotConfig.from_dict(raw_c)
    except ConfigError as err:
        raise ConfigError(f"{config or 'config'}: {err}") from None
    try:
        prm = Params.from_dict(raw_p)
    except ConfigError as err:
        raise ConfigError(f"{params or 'params'}: {err}") from None
    return cfg, prm


@app.command()
def train(
    config: ConfigOpt = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in output_dir.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the test results as JSON.")] = None,
    name: NameOpt = None,
    no_track: NoTrackOpt = False,
    db: DbOpt = None,
) -> None:
    """Meta-train, keep the best model in output_dir, then evaluate it on the test tasks."""
    from .attempts import stored_configs, tracked_train

    resume_by_name = resume and name and not (config or params or set_ or no_track)
    cfg, prm = stored_configs(name, db) if resume_by_name else _load(config, params, set_)
    # Only now torch (seconds to import): a mistyped key is reported at once.
    from ..training import format_table
    from ..training.distributed import launched_rank
    from ..training.setup import make_accelerator
    from .logs import setup_logging

    # Logging first (the main process by its launcher rank): making the accelerator logs the precision.
    setup_logging(cfg.logging.log_dir, cfg.logging.level, launched_rank() == 0)
    accelerator = make_accelerator(prm)
    result = tracked_train(cfg, prm, resume=resume, accelerator=accelerator, name=name, db=db, no_track=no_track)
    if accelerator.is_main_process:
        typer.echo(
            f"Best model (step {result.best_step}) saved in {result.output_dir};"
            f" meta-training took {result.train_seconds:.0f} s."
        )
        if result.test:
            typer.echo(
                format_table(
                    result.test, title=f"Test tasks ({prm.algorithm}, {prm.eval_inner_steps} adaptation steps):"
                )
            )
            if json_out:
                _write_json(json_out, result.test)
    # Every process leaves the process group before exiting: a gloo group torn down at interpreter
    # exit can abort a rank ("terminate called without an active exception") after the work is done.
    accelerator.end_training()


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A model folder saved by kshot (or any HF classifier).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write per-task and mean metrics as JSON.")] = None,
    name: NameOpt = None,
    no_track: NoTrackOpt = False,
    db: DbOpt = None,
) -> None:
    """Few-shot protocol on the test tasks: adapt on each support set, score its query set."""
    cfg, _ = _load(config, None, [s for s in (set_ or []) if s.startswith("config.")])
    overrides = _param_overrides(set_)
    from ..training import evaluate_model, format_table
    from ..training.distributed import launched_rank
    from ..training.saved import saved_params
    from ..training.setup import make_accelerator
    from .attempts import tracked_evaluate
    from .logs import setup_logging

    setup_logging(cfg.logging.log_dir, cfg.logging.level, launched_rank() == 0)
    accelerator = make_accelerator(saved_params(model, overrides), training=False)
    if not accelerator.is_main_process:
        # Under a launcher every process scores its share of the tasks; only the main one reports.
        evaluate_model(model, cfg, overrides, accelerator)
        accelerator.end_training()
        return
    results = tracked_evaluate(model, cfg, overrides, name=name, db=db, no_track=no_track)
    typer.echo(format_table(results, title=f"Few-shot evaluation of {model}:"))
    if json_out:
        _write_json(json_out, results)
    accelerator.end_training()


@app.command()
def adapt(
    model: Annotated[Path, typer.Option("--model", help="The meta-learned model folder.")],
    support: Annotated[Path, typer.Option("--support", help="CSV or JSONL with 'text' and 'label'.")],
    out: Annotated[Path, typer.Option("--out", help="Where to save the adapted model.")],
    steps: Annotated[
        Optional[int], typer.Option("--steps", help="Adaptation steps (default: the model's eval_inner_steps).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune on a few labelled examples and save a standard Hugging Face model."""
    from ..training import adapt_model
    from .logs import setup_logging

    setup_logging(None)
    info = adapt_model(model, support, out, steps, _param_overrides(set_))
    typer.echo(f"Adapted on {support} for {info['steps']} steps; labels {', '.join(info['labels'])}; saved to {out}.")


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="A saved classifier folder.")],
    input: Annotated[
        Path, typer.Option("--input", help=".txt (one text per line), .csv or .jsonl with a 'text' column.")
    ],
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Write JSONL predictions here instead of printing.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
) -> None:
    """Predict labels for new texts."""
    from ..data.user_files import read_labelled_file
    from ..training.predict import predict_texts, write_predictions

    texts, _ = read_labelled_file(input, label_column=None)
    preds = predict_texts(model, texts, batch_size)
    if output:
        write_predictions(preds, output)
        typer.echo(f"Wrote {len(preds)} predictions to {output}.")
    else:
        for p in preds:
            typer.echo(f"{p['label']}\t{p['score']:.4f}\t{p['text']}")


from . import serve as _serve  # noqa: E402 - the service commands live in their own module

app.command()(_serve.serve)
app.command()(_serve.worker)

from .benchmark import benchmark as _benchmark  # noqa: E402

app.command()(_benchmark)

from .tune import tune as _tune  # noqa: E402

app.command()(_tune)


def _param_overrides(overrides: list[str] | None) -> dict:
    from ..config import apply_overrides

    raw_c, raw_p = {}, {}
    apply_overrides(raw_c, raw_p, [s for s in (overrides or []) if s.startswith("params.")])
    return raw_p


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    try:
        app(standalone_mode=False)
    except KshotError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
