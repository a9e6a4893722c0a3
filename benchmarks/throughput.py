"""Meta-training throughput and its share of this machine's float32 and bfloat16 matmul peaks.

Measures, in one run (so the ratios are meaningful on a noisy machine):
1. the float32 and the bfloat16 matrix-multiply peaks (GFLOP/s) with torch.mm at the model's own
   shapes; every figure below is reported against both, for each --precisions value in turn;
2. kshot's meta-training (the algorithm of --set algorithm=..., Reptile by default) on real ARSC
   episodes: episodes/s, episode examples (support + query) per second, and the achieved GFLOP/s
   of the whole meta-step (FLOPs counted by torch.utils.flop_counter on the very same episodes);
3. a full-model training step (forward + backward) on the support batches of those episodes: the
   inner loop of Reptile/MAML, whose GFLOP/s is the "inner loop" figure (ANIL's inner loop runs the
   head alone, a few small products; its cost is the meta-step's body passes, figure 2);
4. optionally (--naive) the loop of the seed project, re-implemented for comparison: per task filter
   the whole dataset by domain, tokenize the chosen examples, pad every batch to 512 tokens, deepcopy
   the model, AdamW with a linear schedule for the inner epochs, score the query set, accumulate
   (meta − fast) and step an outer AdamW.

    .venv/bin/python benchmarks/throughput.py --steps 6 --naive-episodes 2
    .venv/bin/python benchmarks/throughput.py -p configs/arsc/anil.yaml --steps 40   # the main job, fp32 and bf16
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from kshot.config import KshotConfig, Params, load_params
from kshot.models import load_model, load_tokenizer, resolve_model_name
from kshot.training.setup import build_algorithm, build_tasks, make_accelerator


def matmul_peak(
    hidden: int, intermediate: int, tokens: int, seconds: float = 3.0, dtype: torch.dtype = torch.float32
) -> float:
    """Best GFLOP/s of torch.mm in ``dtype`` over the model's large GEMM shapes (forward and backward shapes)."""
    shapes = [(tokens, hidden, intermediate), (tokens, intermediate, hidden), (hidden, tokens, intermediate)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / len(shapes):
            torch.mm(a, b)
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
    return best


def count_flops(model, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def kshot_throughput(config: KshotConfig, params: Params, steps: int, profile_rows: int = 0) -> dict:
    accelerator = make_accelerator(params)
    name = resolve_model_name(config.model.name_or_path)
    tokenizer = load_tokenizer(name)
    tasks = build_tasks(config, params, tokenizer)
    model = load_model(name, tasks.collection.label_names)
    algo = build_algorithm(model, params, accelerator, tokenizer)
    sampler = tasks.sampler
    from kshot.algorithms.base import support_batches

    algo.meta_step(sampler.meta_batch(0), 0, params.meta_batch_size)  # warm-up (allocations)
    timed = list(range(1, steps + 1))
    t0 = time.perf_counter()
    for step in timed:
        algo.meta_step(sampler.meta_batch(step), step, params.meta_batch_size)
    wall = time.perf_counter() - t0
    # FLOPs depend on the shapes only, so replaying the timed steps' episodes counts them exactly.
    with FlopCounterMode(display=False) as counter:
        for step in timed:
            algo.meta_step(sampler.meta_batch(step), step, params.meta_batch_size)
    meta_flops = counter.get_total_flops()
    if profile_rows:
        # Where a meta-step's time goes, by operator (e.g. dropout's random masks: aten::bernoulli_).
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for step in timed:
                algo.meta_step(sampler.meta_batch(step), step, params.meta_batch_size)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_rows))
    episode_examples = sum(len(ep.support) + len(ep.query) for step in timed for ep in sampler.meta_batch(step))
    # The inner loop alone on exactly the batches of the timed steps (same episodes, same batch
    # order), timed apart from the query scoring and the outer update, then its FLOPs counted.
    batches = [
        batch
        for step in timed
        for ep in sampler.meta_batch(step)
        for batch in support_batches(
            ep.support,
            params.inner_steps,
            params.inner_batch_size,
            tokenizer.pad_token_id,
            np.random.default_rng(ep.seed),
        )
    ]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    model.train()
    t1 = time.perf_counter()
    for batch in batches:
        with accelerator.autocast():
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    inner_time = time.perf_counter() - t1
    flops = sum(count_flops(model, b) for b in batches)
    n_episodes = steps * params.meta_batch_size
    return {
        "precision": accelerator.mixed_precision,
        "episodes_per_s": n_episodes / wall,
        "episode_examples_per_s": episode_examples / wall,
        "meta_step_gflops_per_s": meta_flops / wall / 1e9,
        "inner_loop_gflops_per_s": flops / inner_time / 1e9,
        "full_model_inner_loop_s_per_wall_s": inner_time / wall,
        "mean_tokens_per_example": float(
            np.mean([int(b["attention_mask"].sum()) / len(b["input_ids"]) for b in batches])
        ),
        "wall_s": wall,
    }


def naive_throughput(
    config: KshotConfig, params: Params, episodes: int, inner_epochs: int = 5, batch: int = 5, k: int = 10, q: int = 10
) -> float:
    """Episodes/s of the seed project's loop (see module docstring), on the same model and data."""
    from kshot.data import load_tasks

    collection = load_tasks(config.data)
    rows = [(t.domain, text, int(lab)) for t in collection.train for text, lab in zip(t.texts, t.labels)]
    domains = sorted({r[0] for r in rows})
    name = resolve_model_name(config.model.name_or_path)
    tokenizer = load_tokenizer(name)
    meta = load_model(name, collection.label_names)
    outer = torch.optim.AdamW(meta.parameters(), lr=1e-5)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(episodes):
        domain = domains[rng.integers(len(domains))]
        subset = [r for r in rows if r[0] == domain]  # filter the whole dataset per task
        chosen = [subset[i] for i in rng.choice(len(subset), k + q, replace=False)]
        enc = tokenizer(
            [r[1] for r in chosen], padding="max_length", truncation=True, max_length=512, return_tensors="pt"
        )
        labels = torch.tensor([r[2] for r in chosen])
        fast = copy.deepcopy(meta)
        fast.train()
        opt = torch.optim.AdamW(fast.parameters(), lr=5e-5)
        total = inner_epochs * (k // batch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
        for _ in range(inner_epochs):
            for b in range(0, k, batch):
                out = fast(
                    input_ids=enc["input_ids"][b : b + batch],
                    attention_mask=enc["attention_mask"][b : b + batch],
                    labels=labels[b : b + batch],
                )
                opt.zero_grad()
                out.loss.backward()
                opt.step()
                sched.step()
        fast.eval()
        with torch.no_grad():
            fast(input_ids=enc["input_ids"][k:], attention_mask=enc["attention_mask"][k:])
        outer.zero_grad()
        for slow, adapted in zip(meta.parameters(), fast.parameters()):  # not `q`: that is the query size
            slow.grad = slow.detach() - adapted.detach()
        outer.step()
    return episodes / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/arsc")
    ap.add_argument("--steps", type=int, default=6, help="Timed outer steps.")
    ap.add_argument(
        "--naive-episodes", type=int, default=0, help="Also time the seed project's loop on this many episodes."
    )
    ap.add_argument(
        "-p", "--params", help="A params.yaml to start from (e.g. configs/arsc/anil.yaml); --set applies after."
    )
    ap.add_argument(
        "--precisions",
        default="no,bf16",
        help="Comma-separated mixed_precision values to measure in this run, on the same episodes (default no,bf16).",
    )
    ap.add_argument(
        "--dropout-masks",
        default="",
        help="Comma-separated params.dropout_masks values (torch, packed, auto) to measure with each precision, "
        "on the same episodes (default: the params' own). With several, runs are named PRECISION/MASKS.",
    )
    ap.add_argument("--set", action="append", default=[], help="params overrides, e.g. --set inner_steps=5")
    ap.add_argument("--json", help="Write the figures here.")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="Also print the N operators that take most of a meta-step's time.",
    )
    args = ap.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    config = KshotConfig.from_dict({"data": {"format": "arsc", "path": args.data}, "logging": {"progress_bar": False}})
    base = {"meta_batch_size": 4, "k_support": 5, "k_query": 10, "inner_steps": 5, "inner_batch_size": 10}
    if args.params:
        base = load_params(args.params).to_dict()
    params = Params.from_dict({**base, **overrides})
    torch.manual_seed(0)
    model = load_model(resolve_model_name(None), ["negative", "positive"])
    cfg = model.config
    tokens = params.inner_batch_size * 64
    # Both peaks in this run: the machine's noise moves them together, so the shares are comparable.
    peaks = {
        "float32": matmul_peak(cfg.hidden_size, cfg.intermediate_size, tokens),
        "bfloat16": matmul_peak(cfg.hidden_size, cfg.intermediate_size, tokens, dtype=torch.bfloat16),
    }
    result = {"threads": torch.get_num_threads(), "matmul_peak_gflops": peaks, "params": params.to_dict(), "runs": {}}
    masks = args.dropout_masks.split(",") if args.dropout_masks else [params.dropout_masks]
    for precision in args.precisions.split(","):
        for mask in masks:
            variant = dataclasses.replace(params, mixed_precision=precision, dropout_masks=mask)
            run = kshot_throughput(config, variant, args.steps, args.profile)
            run["dropout_masks"] = mask
            for key in ("meta_step", "inner_loop"):
                run[f"{key}_share_of_peak"] = {name: run[f"{key}_gflops_per_s"] / peak for name, peak in peaks.items()}
            result["runs"][precision if len(masks) == 1 else f"{precision}/{mask}"] = run
    runs = result["runs"]
    for mask in masks:
        fp32, bf16 = (precision if len(masks) == 1 else f"{precision}/{mask}" for precision in ("no", "bf16"))
        if fp32 in runs and bf16 in runs:
            key = "bf16_speedup" if len(masks) == 1 else f"bf16_speedup/{mask}"
            result[key] = runs[bf16]["episodes_per_s"] / runs[fp32]["episodes_per_s"]
    if len(masks) > 1:  # each mask against the first, per precision
        for precision in args.precisions.split(","):
            first = runs[f"{precision}/{masks[0]}"]["episodes_per_s"]
            for mask in masks[1:]:
                result[f"masks_speedup/{precision}/{mask}"] = runs[f"{precision}/{mask}"]["episodes_per_s"] / first
    if args.naive_episodes:
        result["naive_episodes_per_s"] = naive_throughput(config, params, args.naive_episodes)
        result["speedup_vs_naive"] = {
            name: run["episodes_per_s"] / result["naive_episodes_per_s"] for name, run in runs.items()
        }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
