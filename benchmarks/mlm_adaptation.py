"""Masked-language-model adaptation of the body on the training domains' reviews, before meta-training.

The published 90 on ARSC (BERT-base "MTM", Deng et al. 2020) trains the body as a masked language
model on the training domains' texts besides meta-learning. This script asks whether that helps
kshot's MiniLM body: it trains the model as a masked language model on every distinct text of the
config's training tasks (their ``train`` split only: no validation or test text is read), then saves
the body as a model folder that `kshot train` can start from:

    .venv/bin/python benchmarks/mlm_adaptation.py -c configs/arsc/tune.yaml --steps 579 --out outputs/tune-mlm
    .venv/bin/kshot train -c configs/arsc/tune.yaml -p configs/arsc/anil.yaml \\
        --set config.model.name_or_path=outputs/tune-mlm --set config.output_dir=outputs/tune-mlm-anil
    .venv/bin/python benchmarks/feature_ceiling.py outputs/tune-mlm-anil -c configs/arsc/tune.yaml

all-MiniLM-L6-v2 ships without its masked-LM head: the head's transform layer starts random (its
decoder is tied to the word embeddings), so it trains alone for ``--head-steps`` steps before the
body's learning rate warms up, lest its first gradients scramble the body. The loss is computed on
the masked positions alone (15 % of tokens; 80 % of them [MASK], 10 % a random token, 10 % kept), so
the 30,522-way output layer runs on those positions only. The saved folder keeps the original
pooler, which a masked-LM model does not have.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from kshot.config import load_config
from kshot.data import collate, load_tasks
from kshot.models import load_tokenizer, resolve_model_name


def training_texts(config) -> list[str]:
    """Every distinct text of the training tasks, in a fixed order."""
    collection = load_tasks(config.data)
    return sorted({text for task in collection.train for text in task.texts})


def masked_batch(
    ids: list[list[int]], tokenizer, probability: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pad one batch and mask it as BERT does; returns the inputs, the masked positions and their labels."""
    batch = collate(ids, tokenizer.pad_token_id)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    special = torch.as_tensor(tokenizer.all_special_ids)
    masked = (torch.rand(input_ids.shape) < probability) & ~torch.isin(input_ids, special)
    labels = input_ids[masked]
    corrupted = input_ids.clone()
    roll = torch.rand(input_ids.shape)
    corrupted[masked & (roll < 0.8)] = tokenizer.mask_token_id
    replaced = masked & (roll >= 0.8) & (roll < 0.9)
    corrupted[replaced] = torch.randint(len(tokenizer), (int(replaced.sum()),))
    return {"input_ids": corrupted, "attention_mask": attention_mask}, masked, labels


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Endless batches of similar lengths (less padding): shuffle, sort pools of 50 batches, shuffle those."""
    pool = 50 * batch_size
    while True:
        order = rng.permutation(len(lengths))
        for start in range(0, len(order) - pool + 1, pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches = [chunk[i : i + batch_size] for i in range(0, pool, batch_size)]
            for b in rng.permutation(len(batches)):
                yield batches[b]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "-c", "--config", required=True, help="kshot config.yaml: its data section names the training tasks."
    )
    ap.add_argument("--out", required=True, help="Folder to save the adapted body (and tokenizer) in.")
    ap.add_argument(
        "--steps",
        type=int,
        default=579,
        help="Optimizer steps (579 took 1170 s here, 2 threads, beside the test suite).",
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate of the body, after warm-up.")
    ap.add_argument(
        "--head-lr", type=float, default=1e-3, help="AdamW learning rate of the masked-LM head's own layers."
    )
    ap.add_argument(
        "--head-steps", type=int, default=60, help="Steps that train the head alone, before the body warms up."
    )
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--mask-probability", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    config = load_config(args.config)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    name = resolve_model_name(config.model.name_or_path)
    tokenizer = load_tokenizer(name, config.model.revision)
    texts = training_texts(config)
    ids = tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
    print(f"{len(texts)} distinct training texts of {args.config}", flush=True)

    model = AutoModelForMaskedLM.from_pretrained(name, revision=config.model.revision)
    model.train()
    body = model.base_model
    head = [p for n, p in model.named_parameters() if not n.startswith(model.base_model_prefix + ".")]
    head_ids = {id(p) for p in head}  # the decoder weight is the (body's) word embedding matrix
    body_params = [p for p in model.parameters() if id(p) not in head_ids]
    heads = [m for n, m in model.named_children() if n != model.base_model_prefix]
    if len(heads) != 1:
        raise SystemExit(
            f"{type(model).__name__} has no single masked-LM head module: {[n for n, _ in model.named_children()]}"
        )
    lm_head = heads[0]
    optimizer = torch.optim.AdamW(
        [{"params": body_params, "lr": 0.0}, {"params": head, "lr": args.head_lr}], weight_decay=0.01
    )
    batches = length_bucketed_batches(np.array([len(x) for x in ids]), args.batch_size, rng)
    t0, smoothed = time.perf_counter(), None
    for step in range(args.steps):
        warm = 0.0 if step < args.head_steps else min(1.0, (step - args.head_steps) / args.warmup_steps)
        optimizer.param_groups[0]["lr"] = args.lr * warm
        inputs, masked, labels = masked_batch([ids[i] for i in next(batches)], tokenizer, args.mask_probability)
        hidden = body(**inputs).last_hidden_state
        loss = torch.nn.functional.cross_entropy(lm_head(hidden[masked]), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        if (step + 1) % 20 == 0:
            print(f"step {step + 1}: masked-LM loss {smoothed:.3f}, {time.perf_counter() - t0:.0f} s", flush=True)

    # A masked-LM model has no pooler: save the original body with the adapted weights over it.
    out = AutoModel.from_pretrained(name, revision=config.model.revision)
    missing = out.load_state_dict(body.state_dict(), strict=False).missing_keys
    print(f"kept from {name}: {missing}")
    out.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"saved {args.out} after {args.steps} steps, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
