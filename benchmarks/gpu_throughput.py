"""Meta-training throughput on a GPU (or, for the comparison, this CPU), per algorithm and precision.

On real ARSC episodes of the main job's shape (configs/arsc/anil.yaml: one 2-way task per outer step, 5 support
examples a class, 20 queries, 128 tokens at most, embeddings frozen), in one process, on the same episodes:

- ``anil`` as the main job trains it; ``protonet``; ``maml`` second order through 5 SGD inner steps on the whole
  model (SGD: with Adam inner steps, bf16 spoils a second-order meta-gradient, see training/precision.py);
- each in float32 and bf16 autocast (``--precisions``);
- episodes/s over a timed window after warm-up steps; the achieved TFLOP/s (FLOPs counted by
  torch.utils.flop_counter on replayed steps of the same episodes) and its share of the float32 and bf16 matmul
  peaks measured in the same run (8192³ products on a GPU; the model's own shapes on a CPU); the GPU's
  utilisation (NVML, sampled every 50 ms over the timed window: the share of time a kernel ran);
- the peak GPU memory of each, and of second-order MAML with gradient checkpointing, first-order MAML (fomaml)
  and fomaml with checkpointing (``--memory``).

    python3 benchmarks/gpu_throughput.py --data /path/to/arsc --json gpu.json           # on the GPU machine
    .venv/bin/python benchmarks/gpu_throughput.py --device cpu --seconds 30 --json cpu.json   # this CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import threading
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

RUNS = {
    "anil": {},
    "protonet": {"algorithm": "protonet"},
    "maml": {"algorithm": "maml", "inner_steps": 5, "inner_optimizer": "sgd", "inner_lr": 1e-3, "first_order": False},
}
MEMORY_RUNS = {
    "maml_checkpointed": {**RUNS["maml"], "gradient_checkpointing": True},
    "fomaml": {**RUNS["maml"], "algorithm": "fomaml"},
    "fomaml_checkpointed": {**RUNS["maml"], "algorithm": "fomaml", "gradient_checkpointing": True},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int = 8192, reps: int = 10) -> float:
    """TFLOP/s of an n×n×n product in ``dtype`` (float32 without TF32), the mean of ``reps`` after warm-up."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


class Utilisation:
    """Mean GPU utilisation (NVML) over a window, sampled by a thread; None where NVML is missing."""

    def __init__(self, device: torch.device):
        self.handle, self.samples, self.stop = None, [], threading.Event()
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.pynvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception as err:  # noqa: BLE001 - the figure is optional; say why it is missing
            print(f"no GPU utilisation: {err}")

    def __enter__(self):
        if self.handle is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop.set()
        if self.handle is not None:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def measure(tasks, tokenizer, name: str, params, seconds: float, warmup: int, count_flops: bool) -> dict:
    """One algorithm in one precision: a fresh model, ``warmup`` steps, then steps for ``seconds``."""
    from kshot.models import load_model, resolve_model_name
    from kshot.training.setup import build_algorithm, make_accelerator

    accelerator = make_accelerator(params)
    device = accelerator.device
    torch.manual_seed(params.seed)  # the new classification head: the same in every run
    model = load_model(resolve_model_name(None), tasks.collection.label_names)
    algo = build_algorithm(model, params, accelerator, tokenizer)
    sampler, batch = tasks.sampler, params.meta_batch_size
    for step in range(warmup):
        algo.meta_step(sampler.meta_batch(step), step, batch)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, t0 = warmup, time.perf_counter()
    with Utilisation(device) as util:
        while time.perf_counter() - t0 < seconds or step == warmup:
            algo.meta_step(sampler.meta_batch(step), step, batch)
            step += 1
            if device.type == "cuda" and step % 8 == 0:
                sync(device)  # the timer reads the GPU's progress, not the queue's
        sync(device)
        wall = time.perf_counter() - t0
    timed = step - warmup
    out = {
        "precision": accelerator.mixed_precision,
        "steps": timed,
        "episodes_per_s": timed * batch / wall,
        "ms_per_episode": 1000 * wall / (timed * batch),
        "gpu_utilisation_percent": util.mean,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    if count_flops:
        # FLOPs follow the shapes only: replaying two of the timed steps' episodes counts them exactly.
        replay = range(warmup, warmup + min(2, timed))
        with FlopCounterMode(display=False) as counter:
            for s in replay:
                algo.meta_step(sampler.meta_batch(s), s, batch)
        flops_per_episode = counter.get_total_flops() / (len(replay) * batch)
        out["gflop_per_episode"] = flops_per_episode / 1e9
        out["tflops_per_s"] = flops_per_episode * out["episodes_per_s"] / 1e12
    del algo, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/arsc")
    ap.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu: measure this CPU (no GPU).")
    ap.add_argument("-p", "--params", default="configs/arsc/anil.yaml", help="The main job's params (the shape).")
    ap.add_argument("--algorithms", default=",".join(RUNS))
    ap.add_argument("--precisions", default="no,bf16")
    ap.add_argument("--seconds", type=float, default=6.0, help="Timed window per algorithm and precision.")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True, help="The memory runs.")
    ap.add_argument("--json", help="Write the figures here.")
    args = ap.parse_args()
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"
    import transformers

    from kshot.config import KshotConfig, Params, load_params
    from kshot.models import load_tokenizer, resolve_model_name
    from kshot.training.setup import build_tasks

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device("cuda" if torch.cuda.is_available() and args.device == "auto" else "cpu")
    base = load_params(args.params)
    config = KshotConfig.from_dict(
        {"data": {"format": "arsc", "path": args.data}, "logging": {"progress_bar": False}, "output_dir": "outputs/tmp"}
    )
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(resolve_model_name(None))
    tasks = build_tasks(config, base, tokenizer)  # every run below shares its episodes (same shape, same seed)
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "tasks_seconds": time.perf_counter() - t0,
        "params": args.params,
        "runs": {},
        "memory": {},
    }
    if device.type == "cuda":
        result["matmul_peak_tflops"] = {
            "float32": matmul_peak_tflops(device, torch.float32),
            "bfloat16": matmul_peak_tflops(device, torch.bfloat16),
        }
    else:
        from throughput import matmul_peak  # benchmarks/throughput.py: the model's own GEMM shapes

        tokens = base.inner_batch_size * 64
        result["matmul_peak_tflops"] = {
            "float32": matmul_peak(384, 1536, tokens) / 1e3,
            "bfloat16": matmul_peak(384, 1536, tokens, dtype=torch.bfloat16) / 1e3,
        }
    print("peaks", json.dumps(result["matmul_peak_tflops"]), flush=True)
    peak_name = {"no": "float32", "bf16": "bfloat16"}
    for precision in args.precisions.split(","):
        for name in args.algorithms.split(","):
            params = dataclasses.replace(Params.from_dict({**base.to_dict(), **RUNS[name]}), mixed_precision=precision)
            run = measure(tasks, tokenizer, name, params, args.seconds, args.warmup, count_flops=True)
            run["share_of_peak"] = {
                k: run["tflops_per_s"] / result["matmul_peak_tflops"][k] for k in result["matmul_peak_tflops"]
            }
            run["share_of_own_precision_peak"] = (
                run["tflops_per_s"] / result["matmul_peak_tflops"][peak_name[precision]]
            )
            result["runs"][f"{name}/{precision}"] = run
        if args.memory and device.type == "cuda":
            for name, changes in MEMORY_RUNS.items():
                params = dataclasses.replace(Params.from_dict({**base.to_dict(), **changes}), mixed_precision=precision)
                run = measure(tasks, tokenizer, name, params, 0.0, 1, count_flops=False)
                result["memory"][f"{name}/{precision}"] = run["peak_memory_gib"]
            result["memory"][f"maml/{precision}"] = result["runs"][f"maml/{precision}"]["peak_memory_gib"]
        if args.json:  # after each precision: a run cut short keeps what it measured
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
    for precision in args.precisions.split(","):
        mem = result["memory"]
        if f"fomaml/{precision}" in mem:
            mem[f"ratio_second_order_to_first_order/{precision}"] = (
                mem[f"maml/{precision}"] / mem[f"fomaml/{precision}"]
            )
            mem[f"ratio_checkpointed_second_order_to_first_order/{precision}"] = (
                mem[f"maml_checkpointed/{precision}"] / mem[f"fomaml/{precision}"]
            )
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
