"""The command line end to end on the tiny model: train → evaluate → adapt → predict, and its errors.

``kshot train`` and the error cases run as real processes (exit codes, the log file the CLI sets
up); evaluate/adapt/predict run in-process through typer's runner to keep the suite fast.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from kshot.cli.main import app

from .. import synthetic
from ..torch_free import run_without_torch

KSHOT = Path(sys.executable).with_name("kshot")


def run_kshot(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [str(KSHOT)] if KSHOT.exists() else [sys.executable, "-m", "kshot"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(autouse=True)
def _restore_kshot_logger():
    """The CLI configures the 'kshot' logger (handlers, no propagation); undo that for other tests."""
    logger = logging.getLogger("kshot")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir) -> Path:
    """A user's project folder: config.yaml, params.yaml and the synthetic review JSON."""
    root = tmp_path_factory.mktemp("project")
    synthetic.write_review_json(root / "dataset.json")
    config = {
        "data": {
            "format": "review_json",
            "path": "dataset.json",
            "test_domains": ["domain6", "domain7"],
            "validation_domains": ["domain5"],
        },
        "model": {"name_or_path": str(tiny_model_dir)},
        "output_dir": "outputs/wrong",
        "logging": {"progress_bar": False},
    }
    params = {
        "meta_steps": 8,
        "meta_batch_size": 2,
        "k_support": 4,
        "k_query": 8,
        "inner_steps": 3,
        "inner_batch_size": 8,
        "inner_lr": 5e-5,
        "eval_every": 3,
        "eval_tasks": 2,
        "eval_inner_steps": 3,
        "max_length": 32,
        "seed": 0,
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture(scope="module")
def trained(workdir) -> tuple[Path, subprocess.CompletedProcess]:
    proc = run_kshot(
        [
            "train",
            "-c",
            "config.yaml",
            "-p",
            "params.yaml",
            "--set",
            "params.meta_steps=3",
            "--set",
            "params.inner_lr=1e-3",
            "--set",
            "config.output_dir=outputs/model",
            "--json",
            "test.json",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir / "outputs" / "model", proc


def test_train_applies_overrides_and_saves_the_model(trained, workdir):
    model_dir, proc = trained
    meta = json.loads((model_dir / "kshot.json").read_text())
    assert meta["params"]["meta_steps"] == 3
    assert meta["params"]["inner_lr"] == 1e-3  # '1e-4'-style overrides are numbers, not strings
    assert meta["params"]["k_support"] == 4  # from -p params.yaml
    assert meta["config"]["output_dir"] == "outputs/model"
    assert meta["label_names"] == ["negative", "positive"]
    assert not (workdir / "outputs" / "wrong").exists()
    assert "Best model (step 3)" in proc.stdout
    assert "domain6" in proc.stdout and "mean" in proc.stdout
    results = json.loads((workdir / "test.json").read_text())
    assert set(results["tasks"]) == {"domain6", "domain7"}


def test_train_logs_to_running_logs_file(trained, workdir):
    log = (workdir / "logs" / "running_logs.log").read_text()
    assert "Meta-training reptile on 5 tasks for 3 steps" in log
    assert "step 3 validation: accuracy=" in log
    assert "step 3 test: accuracy=" in log


def test_importing_kshot_configures_no_logging(tmp_path):
    code = (
        "import logging, kshot, kshot.cli.main, kshot.training, kshot.data, kshot.algorithms.reptile\n"
        "print(len(logging.getLogger('kshot').handlers), len(logging.getLogger().handlers))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0"]
    assert list(tmp_path.iterdir()) == []  # no logs/ folder, no cache, nothing written


def test_evaluate_writes_per_task_and_mean_metrics(trained, workdir, monkeypatch):
    model_dir, _ = trained
    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_dir),
            "-c",
            "config.yaml",
            "--set",
            "params.eval_inner_steps=2",
            "--json",
            "eval/results.json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((workdir / "eval" / "results.json").read_text())
    assert list(data["tasks"]) == ["domain6", "domain7"]
    for task in data["tasks"].values():
        assert 0.0 <= task["accuracy"] <= 1.0 and 0.0 <= task["macro_f1"] <= 1.0
        assert task["n_query"] > 0
    assert data["mean"]["accuracy"] == pytest.approx(np.mean([t["accuracy"] for t in data["tasks"].values()]))
    assert data["mean"]["macro_f1"] == pytest.approx(np.mean([t["macro_f1"] for t in data["tasks"].values()]))
    assert "Few-shot evaluation" in result.stdout and "domain7" in result.stdout and "mean" in result.stdout


def spam_ham_rows() -> list[dict]:
    # 'spam' and 'ham' are new label names; the texts reuse the synthetic words the body knows.
    rows = synthetic.make_examples(9, 16, seed=5)
    return [{"text": r["text"], "label": "spam" if r["label"] == "positive" else "ham"} for r in rows]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_adapt_saves_a_pipeline_ready_model_with_the_users_labels(trained, tmp_path, suffix):
    from transformers import pipeline

    model_dir, _ = trained
    rows = spam_ham_rows()
    support = synthetic.write_table(tmp_path / f"support{suffix}", rows)
    out = tmp_path / "adapted"
    result = CliRunner().invoke(
        app, ["adapt", "--model", str(model_dir), "--support", str(support), "--out", str(out), "--steps", "40"]
    )
    assert result.exit_code == 0, result.output
    assert "labels ham, spam" in result.stdout
    meta = json.loads((out / "kshot.json").read_text())
    assert meta["label_names"] == ["ham", "spam"] and meta["adapt_steps"] == 40

    clf = pipeline("text-classification", model=str(out), device="cpu")
    predictions = clf([r["text"] for r in rows])
    assert {p["label"] for p in predictions} <= {"spam", "ham"}
    correct = np.mean([p["label"] == r["label"] for p, r in zip(predictions, rows)])
    assert correct >= 0.9, correct  # it fits the user's own examples


def test_adapt_with_the_models_own_labels_keeps_its_head(trained, tmp_path):
    model_dir, _ = trained
    rows = synthetic.make_examples(9, 8, seed=1)
    support = synthetic.write_table(tmp_path / "support.csv", [{"text": r["text"], "label": r["label"]} for r in rows])
    out = tmp_path / "adapted"
    result = CliRunner().invoke(
        app, ["adapt", "--model", str(model_dir), "--support", str(support), "--out", str(out), "--steps", "0"]
    )
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    before, after = load_file(str(model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(
        np.array_equal(before[k].numpy(), after[k].numpy()) for k in before
    )  # 0 steps: the meta-learned model itself
    assert json.loads((out / "kshot.json").read_text())["label_names"] == ["negative", "positive"]


def test_predict_prints_and_writes_jsonl(trained, tmp_path):
    model_dir, _ = trained
    texts = ["great love excellent product", "awful broken waste item", "the item is nice"]
    (tmp_path / "input.txt").write_text("\n".join(texts) + "\n\n")
    printed = CliRunner().invoke(app, ["predict", "--model", str(model_dir), "--input", str(tmp_path / "input.txt")])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, text in zip(lines, texts):
        label, score, echoed = line.split("\t")
        assert label in {"negative", "positive"} and 0.5 <= float(score) <= 1.0 and echoed == text

    synthetic.write_table(tmp_path / "input.jsonl", [{"text": t} for t in texts])
    written = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            str(model_dir),
            "--input",
            str(tmp_path / "input.jsonl"),
            "--output",
            str(tmp_path / "out" / "pred.jsonl"),
        ],
    )
    assert written.exit_code == 0, written.output
    rows = [json.loads(line) for line in (tmp_path / "out" / "pred.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == [line.split("\t")[0] for line in lines]  # same model, same answers


def test_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path):
    """The installed entry point, as a real process."""
    (tmp_path / "bad.yaml").write_text("data:\n  pth: x\n")
    proc = run_kshot(["train", "-c", "bad.yaml"], tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: bad.yaml: Unknown key 'data.pth'. Did you mean 'path'?")


def test_a_config_mistake_is_reported_before_torch_is_imported(tmp_path):
    """torch and transformers take seconds to import: a mistyped key must not wait for them."""
    (tmp_path / "bad.yaml").write_text("data:\n  pth: x\n")
    bad = [(["train", "-c", "bad.yaml"], 2), (["evaluate", "--model", "m", "-c", "bad.yaml"], 2)]
    proc = run_without_torch(bad, cwd=tmp_path)
    assert proc.stderr.count("Unknown key 'data.pth'") == 2


def test_a_benchmark_intent_option_mistake_is_reported_before_torch_is_imported(tmp_path):
    """`kshot benchmark intent` trains a split for an hour before its baselines: a mistyped split, baseline or
    SetFit count is refused first, naming the value and what to give."""
    (tmp_path / "BANKING77" / "few_shot" / "01").mkdir(parents=True)
    base = ["benchmark", "intent", "--data-root", str(tmp_path), "--datasets", "BANKING77"]
    bad = [
        (base + ["--splits", "07"], 2),
        (base + ["--splits", "01", "--baselines", "frozen_prototype"], 2),
        (base + ["--splits", "01", "--setfit-episodes", "8,8"], 2),
    ]
    proc = run_without_torch(bad, cwd=tmp_path)
    assert "No class split at" in proc.stderr and "07" in proc.stderr
    assert "Unknown baseline (--baselines) 'frozen_prototype'. Did you mean 'frozen_prototypes'?" in proc.stderr
    assert "--setfit-episodes needs 4 counts" in proc.stderr


def test_the_cli_baseline_names_are_the_baselines_module_methods():
    from kshot.benchmark.baselines import methods
    from kshot.benchmark.settings import BASELINES

    assert list(BASELINES) == methods()


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        ({}, ["train", "--set", "params.inner_lrr=1e-4"], "Did you mean 'inner_lr'?"),
        ({}, ["train", "--set", "inner_lr=1e-4"], "must start with 'config.' or 'params.'"),
        ({"p.yaml": "meta_steps: [1\n"}, ["train", "-p", "p.yaml"], "p.yaml is not valid YAML: expected ',' or ']'"),
        ({"p.yaml": "meta_steps: 0\n"}, ["train", "-p", "p.yaml"], "'meta_steps' must be at least 1"),
        ({}, ["train", "-c", "absent.yaml"], "Cannot read absent.yaml"),
        (
            {"c.yaml": "data:\n  format: review_json\n  path: missing.json\n"},
            ["train", "-c", "c.yaml"],
            "Review JSON file missing.json does not exist",
        ),
        ({}, ["evaluate", "--model", "nowhere"], "Model folder nowhere does not exist"),
        (
            {"s.csv": "text,lab\nhello,spam\n"},
            ["adapt", "--model", ".", "--support", "s.csv", "--out", "o"],
            "no column 'label'",
        ),
        (
            {"s.csv": "text,label\nhello,spam\n ,ham\n"},
            ["adapt", "--model", ".", "--support", "s.csv", "--out", "o"],
            "row 2: the text ('text') is empty",
        ),
        ({}, ["predict", "--model", ".", "--input", "absent.txt"], "absent.txt does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, files, args, expected):
    from kshot.cli.main import main

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kshot", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert not (tmp_path / "o").exists()  # nothing written on failure
