"""Peak memory of one MAML meta-gradient on the CPU: second order with and without recomputed steps, first order.

The main job's episode shape (configs/arsc/anil.yaml: 2-way, 5 support examples a class, 20 queries, 128 tokens
at most, embeddings frozen) with all-MiniLM-L6-v2 and the runs of benchmarks/gpu_throughput.py: ``maml`` is second
order through 5 SGD inner steps over the whole model, ``fomaml`` first order; ``_checkpointed`` adds
``gradient_checkpointing`` (for second-order maml: each inner step recomputed in the backward pass,
functional.recomputed_meta_gradients). Each configuration runs in a fresh process on the same ARSC episode;
reported: wall time of one ``meta_gradients`` call and the peak RSS above the RSS before it (what the
meta-gradient itself holds), with the query loss and gradient norm (equal across the maml rows: the same
meta-gradient).

    .venv/bin/python benchmarks/maml_memory.py --json maml_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def child(name: str, data: str, params_path: str, precision: str) -> dict:
    import dataclasses

    import torch
    import transformers

    from gpu_throughput import MEMORY_RUNS, RUNS
    from kshot.config import KshotConfig, Params, load_params
    from kshot.models import load_model, load_tokenizer, resolve_model_name
    from kshot.training.setup import build_algorithm, build_tasks, make_accelerator

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    base = load_params(params_path)
    changes = {**RUNS, **MEMORY_RUNS}[name]
    params = dataclasses.replace(Params.from_dict({**base.to_dict(), **changes}), mixed_precision=precision)
    config = KshotConfig.from_dict({"data": {"format": "arsc", "path": data}, "logging": {"progress_bar": False}})
    tokenizer = load_tokenizer(resolve_model_name(None))
    tasks = build_tasks(config, params, tokenizer)
    accelerator = make_accelerator(params)
    torch.manual_seed(params.seed)  # the new classification head: the same in every process
    model = load_model(resolve_model_name(None), tasks.collection.label_names)
    algo = build_algorithm(model, params, accelerator, tokenizer)
    episodes = tasks.sampler.meta_batch(0)
    before = rss_mib()
    t0 = time.perf_counter()
    grads, metrics = algo.meta_gradients(episodes, params.meta_batch_size)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    return {
        "run": name,
        "precision": accelerator.mixed_precision,
        "seconds": seconds,
        "peak_above_start_mib": peak - before,
        "rss_before_mib": before,
        "query_loss": metrics["loss"],
        "grad_norm": norm,
        "tokens": int(sum(len(x) for ep in episodes for part in (ep.support, ep.query) for x in part.input_ids)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/arsc")
    ap.add_argument("-p", "--params", default="configs/arsc/anil.yaml")
    ap.add_argument("--precision", default="no")
    ap.add_argument("--runs", default="maml,maml_checkpointed,fomaml,fomaml_checkpointed")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.params, args.precision)))
        return
    rows = []
    for name in args.runs.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--data", args.data, "-p", args.params]
        out = subprocess.run(cmd + ["--precision", args.precision], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    by = {r["run"]: r for r in rows}
    if "fomaml" in by:
        for r in rows:
            r["memory_vs_fomaml"] = r["peak_above_start_mib"] / by["fomaml"]["peak_above_start_mib"]
    print(f"{'run':<22} {'peak MiB':>9} {'x fomaml':>9} {'seconds':>8} {'query loss':>11} {'grad norm':>10}")
    for r in rows:
        ratio = r.get("memory_vs_fomaml", float("nan"))
        print(
            f"{r['run']:<22} {r['peak_above_start_mib']:9.0f} {ratio:9.2f} {r['seconds']:8.1f} "
            f"{r['query_loss']:11.6f} {r['grad_norm']:10.6f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
