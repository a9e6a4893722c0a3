import json

import pytest
import yaml
from typer.testing import CliRunner

from kshot.cli.main import app


@pytest.fixture()
def bench_files(tmp_path, tiny_run):
    config, params = tiny_run
    c, p = tmp_path / "config.yaml", tmp_path / "params.yaml"
    c.write_text(yaml.safe_dump(config.to_dict()))
    p.write_text(yaml.safe_dump(params.to_dict()))
    return c, p


def test_benchmark_compares_algorithms_and_writes_table_json_and_plot(tmp_path, bench_files):
    c, p = bench_files
    out = tmp_path / "bench"
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "custom",
            "-c",
            str(c),
            "-p",
            str(p),
            "--algorithms",
            "reptile,protonet",
            "--budget-steps",
            "2",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())["results"]
    assert set(data) == {"reptile", "protonet"}
    for name, r in data.items():
        assert r["steps"] == 2, name
        assert set(r["test"]["tasks"]) == {"domain6", "domain7"}
        assert 0.0 <= r["test"]["mean"]["accuracy"] <= 1.0
        assert r["peak_rss_mib"] > 50
    assert (out / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| reptile |" in (out / "results.md").read_text()


def test_benchmark_rejects_unknown_algorithm_before_running(tmp_path, bench_files):
    c, p = bench_files
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "custom",
            "-c",
            str(c),
            "-p",
            str(p),
            "--algorithms",
            "reptil",
            "--budget-steps",
            "2",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code != 0
    assert "Did you mean 'reptile'" in str(res.exception) or "Did you mean 'reptile'" in res.output
    assert not (tmp_path / "b" / "results.json").exists()


def test_benchmark_needs_a_budget(tmp_path, bench_files):
    c, p = bench_files
    res = CliRunner().invoke(
        app,
        ["benchmark", "custom", "-c", str(c), "-p", str(p), "--algorithms", "reptile", "--out", str(tmp_path / "b")],
    )
    assert res.exit_code != 0
    assert "budget" in str(res.exception).lower()


def test_a_step_budget_wins_over_an_algorithms_own_meta_steps_but_finetune_keeps_its_no_op_step(tmp_path, tiny_run):
    from kshot.benchmark import BenchmarkSpec

    config, params = tiny_run
    own = {"protonet": {"meta_steps": 600, "metric_lr": 2e-5}, "finetune": {"meta_steps": 1}}
    spec = BenchmarkSpec(config, params, ["protonet", "finetune"], tmp_path, budget_steps=300, algorithm_params=own)
    protonet, finetune = spec.entry("protonet")["params"], spec.entry("finetune")["params"]
    assert (protonet["meta_steps"], protonet["metric_lr"]) == (300, 2e-5)  # the file's other settings stay
    assert finetune["meta_steps"] == 1
    timed = BenchmarkSpec(config, params, ["protonet"], tmp_path, budget_minutes=1.0, algorithm_params=own)
    assert timed.entry("protonet")["params"]["meta_steps"] == 600  # a clock budget: the file bounds the steps
