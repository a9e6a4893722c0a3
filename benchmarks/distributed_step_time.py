"""Outer-step time of meta-training on 1 and on 2 processes, measured in one run.

    .venv/bin/python benchmarks/distributed_step_time.py --model tiny --steps 8
    .venv/bin/python benchmarks/distributed_step_time.py --model minilm --steps 4 --meta-batch-size 4

Each setting is launched with torch.distributed.run (what ``accelerate launch --multi_gpu`` runs) on
synthetic multi-domain data, on CPUs unless ``--gpu``; the CPU cores are shared out between the
processes (by default 1 process × all threads, then 2 processes × half each; ``--settings`` picks
others). The main process times every outer step after the first (warm-up); its clock includes
waiting for the other process, as a user's does.
Prints the median step time per setting and the 2-process/1-process ratio, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        choices=["tiny", "minilm"],
        default="tiny",
        help="tiny: a 2-layer BERT built here; minilm: the bundled all-MiniLM-L6-v2.",
    )
    ap.add_argument("--steps", type=int, default=8, help="Outer steps per setting (the first is not timed).")
    ap.add_argument(
        "--meta-batch-size", type=int, default=4, help="Tasks per outer step (in total, over all processes)."
    )
    ap.add_argument("--inner-steps", type=int, default=5)
    ap.add_argument(
        "--settings",
        nargs="+",
        default=None,
        metavar="PxT",
        help=(
            "Settings to measure, processes x torch threads per process, e.g. 1x1 1x2 2x1;"
            " default: 1 and 2 processes sharing the cores."
        ),
    )
    ap.add_argument("--gpu", action="store_true", help="Use the GPUs (one per process) instead of CPUs.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    return ap.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_inputs(model: str, work: Path) -> tuple[str, Path]:
    sys.path.insert(0, str(REPO))
    from tests import synthetic

    data = synthetic.write_review_json(work / "dataset.json", n_domains=8, n_per_domain=80)
    model_dir = str(synthetic.build_tiny_model(work / "tiny-bert")) if model == "tiny" else "default"
    return model_dir, data


def parse_settings(settings: list[str] | None) -> list[tuple[int, int]]:
    cores = os.cpu_count() or 1
    if not settings:
        return [(1, cores), (2, max(1, cores // 2))]
    try:
        return [(int(p), int(t)) for p, t in (s.lower().split("x") for s in settings)]
    except ValueError:
        raise SystemExit(f"--settings: expected PROCESSESxTHREADS such as 2x1, got {' '.join(settings)}") from None


def run_setting(args, n: int, threads: int, model_dir: str, data: Path, work: Path) -> dict:
    name = f"{n}x{threads}"
    out = work / f"times-{name}.json"
    spec = {
        "model": model_dir,
        "data": str(data),
        "work": str(work / f"run-{name}"),
        "steps": args.steps,
        "meta_batch_size": args.meta_batch_size,
        "inner_steps": args.inner_steps,
    }
    (work / f"spec-{name}.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if not args.gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(n),
        "--master_port",
        str(free_port()),
        __file__,
        "--worker",
        str(out),
        str(work / f"spec-{name}.json"),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    times = json.loads(out.read_text())
    return {
        "processes": n,
        "threads_per_process": threads,
        "median_step_s": statistics.median(times),
        "mean_step_s": statistics.fmean(times),
        "timed_steps": len(times),
        "launch_total_s": time.perf_counter() - t0,
    }


def worker(out: Path, spec_file: Path) -> None:
    from kshot.config import KshotConfig, Params
    from kshot.training import MetaTrainer, TrainerCallback

    spec = json.loads(spec_file.read_text())

    class StepClock(TrainerCallback):
        def __init__(self):
            self.stamps = []

        def on_train_begin(self, trainer) -> None:
            self.stamps.append(time.perf_counter())

        def on_step_end(self, trainer, step, metrics) -> None:
            self.stamps.append(time.perf_counter())  # metrics are reduced across processes: a sync point

    config = KshotConfig.from_dict(
        {
            "data": {
                "format": "review_json",
                "path": spec["data"],
                "test_domains": ["domain7"],
                "cache_dir": spec["work"] + "/cache",
            },
            "model": {"name_or_path": spec["model"]},
            "output_dir": spec["work"] + "/out",
            "logging": {"log_dir": spec["work"] + "/logs", "progress_bar": False},
        }
    )
    params = Params.from_dict(
        {
            "meta_steps": spec["steps"],
            "meta_batch_size": spec["meta_batch_size"],
            "inner_steps": spec["inner_steps"],
            "k_support": 8,
            "k_query": 16,
            "inner_batch_size": 8,
            "max_length": 64,
            "eval_every": 0,
            "checkpoint_every": 0,
            "test_after_train": False,
            "seed": 0,
        }
    )
    clock = StepClock()
    trainer = MetaTrainer(config, params, callbacks=[clock])
    trainer.train()
    if trainer.accelerator.is_main_process:
        steps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
        out.write_text(json.dumps(steps[1:]))


def main() -> None:
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        worker(Path(sys.argv[i + 1]), Path(sys.argv[i + 2]))
        return
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kshot-bench-") as tmp:
        work = Path(tmp)
        model_dir, data = build_inputs(args.model, work)
        results = [run_setting(args, n, t, model_dir, data, work) for n, t in parse_settings(args.settings)]
    base = results[0]["median_step_s"]
    print(
        f"\nmodel={args.model} meta_batch_size={args.meta_batch_size} inner_steps={args.inner_steps}"
        f" cores={os.cpu_count()}"
    )
    print(f"{'processes':>9} {'threads/proc':>12} {'median step (s)':>16} {'mean step (s)':>14} {'vs first':>9}")
    for r in results:
        print(
            f"{r['processes']:>9} {r['threads_per_process']:>12} {r['median_step_s']:>16.3f}"
            f" {r['mean_step_s']:>14.3f} {r['median_step_s'] / base:>9.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
