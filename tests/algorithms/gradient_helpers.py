"""Tiny float64 models and hand-built episodes for the gradient-based algorithms' invariant tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from kshot.config import Params
from kshot.data import Episode, TaskExamples

VOCAB = 30


def tiny_bert(seed: int = 0, dropout: float = 0.0):
    """A 1-layer BERT small enough for finite differences, in float64."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config).double()


class BagOfWords(torch.nn.Module):
    """A plain torch module shaped like a Hugging Face classifier: body under ``base_model_prefix``,
    a ``classifier`` head, ``config.num_labels``, and an output with ``.logits``."""

    base_model_prefix = "body"

    def __init__(self, seed: int = 0, hidden: int = 6, num_labels: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.config = SimpleNamespace(num_labels=num_labels)
        self.body = torch.nn.ModuleDict(
            {"embed": torch.nn.Embedding(VOCAB, hidden), "mix": torch.nn.Linear(hidden, hidden)}
        )
        self.classifier = torch.nn.Linear(hidden, num_labels)
        self.double()

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).to(self.classifier.weight.dtype)
        pooled = (self.body["embed"](input_ids) * mask).sum(1) / mask.sum(1)
        logits = self.classifier(torch.tanh(self.body["mix"](pooled)))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def task(n: int, seed: int, name: str = "task") -> TaskExamples:
    """``n`` random token sequences of varied length (so padding is exercised) with labels 0/1."""
    rng = np.random.default_rng(seed)
    ids = [rng.integers(5, VOCAB, size=int(rng.integers(3, 7))) for _ in range(n)]
    labels = np.arange(n) % 2
    t = TaskExamples(name=name, domain=name, texts=[f"t{i}" for i in range(n)], labels=labels)
    t.input_ids = ids
    return t


def episode(seed: int = 0, n_support: int = 6, n_query: int = 5) -> Episode:
    return Episode(task=f"ep{seed}", support=task(n_support, seed), query=task(n_query, seed + 1000), seed=seed)


def params(**overrides) -> Params:
    base = {
        "inner_optimizer": "sgd",
        "inner_lr": 0.5,
        "inner_steps": 2,
        "inner_batch_size": 6,
        "max_grad_norm": None,
        "meta_lr": 1e-2,
        "seed": 0,
    }
    base.update(overrides)
    return Params.from_dict(base)


def build(algorithm: str, model, **overrides):
    from kshot.algorithms import get_algorithm

    return get_algorithm(algorithm)(model, params(algorithm=algorithm, **overrides), None, 0)


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])
