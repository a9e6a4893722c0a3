"""Peak memory and time of one learned-optimizer meta-gradient, with and without checkpointing the unroll.

Each configuration runs in a fresh process (so peak RSS is its own): build the model, warm up, then
time one ``meta_gradients`` call (the unrolled inner loop, the query loss and the backward pass
through every step). Reported: wall time, and peak RSS above the RSS after warm-up (what the unroll
itself adds). Without checkpointing every step's activations (the model's, and the coordinate-wise
network's) are held until the backward pass; with ``--segment k`` only every k-th state is kept and
each segment is recomputed in the backward pass.

Three settings per unroll length: no checkpointing; segments of ≈√steps steps recomputed; and the
same plus the coordinate-wise network's activations recomputed (``params.lopt_checkpoint_segment``
> 0 turns on both). The default model is a small BERT configuration (random weights): without
checkpointing the coordinate-wise network alone stores ~90 floats per parameter coordinate per
unrolled step, so all-MiniLM-L6-v2 (22.7 M parameters) would need about 8 GB per step, more than
this shared machine has. ``--model default`` measures MiniLM anyway.

    .venv/bin/python benchmarks/learned_optimizer_memory.py --steps 5 10 20
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def child(args) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from kshot.algorithms.learned_optimizer import (
        LearnedOptimizer,
        LoptConfig,
        UnrollOptions,
        meta_gradients,
        model_loss_fn,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "default":
        from kshot.models import load_model

        model = load_model(None, ["negative", "positive"])
    else:
        config = BertConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=4,
            intermediate_size=4 * args.hidden,
            max_position_embeddings=128,
            num_labels=2,
        )
        model = BertForSequenceClassification(config)
    model.train()
    vocab = model.config.vocab_size
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    init = {n: p for n, p in model.named_parameters() if p.requires_grad}
    lopt = LearnedOptimizer(LoptConfig(hidden=args.lopt_hidden, init_lr=1e-3, init_rule="adam"), names)
    g = torch.Generator().manual_seed(1)

    def batch(n: int) -> dict:
        return {
            "input_ids": torch.randint(1000 % vocab, vocab, (n, args.length), generator=g),
            "attention_mask": torch.ones(n, args.length, dtype=torch.long),
            "labels": torch.randint(0, 2, (n,), generator=g),
        }

    support = [batch(args.batch) for _ in range(args.unroll)]
    query = [(batch(2 * args.batch), 1.0)]
    options = UnrollOptions(
        first_order=args.first_order, checkpoint_segment=args.segment, checkpoint_network=args.network
    )
    loss_fn = model_loss_fn(model)
    # Warm-up: one step's worth, so allocator pools and lazy initialisation are not counted.
    meta_gradients(lopt, loss_fn, init, support[:1], query, options)
    base = rss_mb()
    t0 = time.perf_counter()
    result = meta_gradients(lopt, loss_fn, init, support, query, options)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "steps": args.unroll,
        "segment": args.segment,
        "network": args.network,
        "seconds": seconds,
        "peak_mb": peak,
        "base_mb": base,
        "added_mb": peak - base,
        "query_loss": result.query_loss,
        "params": sum(p.numel() for p in init.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="Unrolled inner steps to measure.")
    parser.add_argument("--segment", type=int, default=None, help="Steps per checkpointed segment; default ≈ √steps.")
    parser.add_argument(
        "--model",
        choices=["bert", "default"],
        default="bert",
        help="'bert': the mid-size config below; 'default': all-MiniLM-L6-v2.",
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--length", type=int, default=64, help="Tokens per example.")
    parser.add_argument(
        "--batch", type=int, default=8, help="Support examples per inner step (the query set is twice as many)."
    )
    parser.add_argument("--lopt-hidden", type=int, default=16)
    parser.add_argument(
        "--first-order", action="store_true", help="Detach the learned optimizer's inputs (no second derivatives)."
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="Torch threads (1: other jobs share this machine's 2 cores)."
    )
    parser.add_argument("--json", default=None, help="Also write the rows to this JSON file.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unroll", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--network", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for steps in args.steps:
        segment = args.segment or max(1, round(math.sqrt(steps)))
        for seg, network in ((0, False), (segment, False), (segment, True)):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--unroll",
                str(steps),
                "--segment",
                str(seg),
                "--model",
                args.model,
                "--hidden",
                str(args.hidden),
                "--layers",
                str(args.layers),
                "--vocab",
                str(args.vocab),
                "--length",
                str(args.length),
                "--batch",
                str(args.batch),
                "--lopt-hidden",
                str(args.lopt_hidden),
                "--threads",
                str(args.threads),
            ]
            cmd += ["--first-order"] * args.first_order + ["--network"] * network
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    mode = "first-order" if args.first_order else "second-order"
    print(
        f"model: {args.model} ({rows[0]['params'] / 1e6:.2f} M parameters), {mode},"
        f" support batch {args.batch}×{args.length} tokens"
    )
    print("| unrolled steps | checkpointing | time (s) | peak RSS added (MB) |")
    print("|---|---|---|---|")
    for r in rows:
        ckpt = f"segments of {r['segment']} steps" if r["segment"] else "off"
        ckpt += " + network recomputed" if r["network"] else ""
        print(f"| {r['steps']} | {ckpt} | {r['seconds']:.1f} | {r['added_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
