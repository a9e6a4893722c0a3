"""build_algorithm applies the params that change the model itself: params.dropout and params.attention_dropout."""

from __future__ import annotations

import pytest
import torch

from kshot.config import Params
from kshot.data import collate
from kshot.training.setup import build_algorithm

from ..algorithms.gradient_helpers import episode, tiny_bert


class _Tokenizer:
    pad_token_id = 0


def _train_mode_logits(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    model.train()
    with torch.no_grad():
        return model(**batch).logits, model(**batch).logits


@pytest.mark.parametrize("algorithm", ["anil", "reptile"])
def test_dropout_zero_makes_training_mode_deterministic_and_keeps_the_saved_config(algorithm):
    model = tiny_bert(dropout=0.3)
    batch = collate(episode(seed=1).support.input_ids, 0)
    first, second = _train_mode_logits(model, batch)
    assert not torch.equal(first, second)  # the model's own dropout is active in training mode

    build_algorithm(model, Params.from_dict({"algorithm": algorithm, "dropout": 0.0}), None, _Tokenizer())
    first, second = _train_mode_logits(model, batch)
    assert torch.equal(first, second)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(first, model(**batch).logits)  # training mode is now eval mode's function
    # What gets saved is the model's config: a user fine-tuning the result later gets MiniLM's dropout back.
    assert model.config.hidden_dropout_prob == 0.3 and model.config.attention_probs_dropout_prob == 0.3


def test_dropout_null_keeps_the_models_own():
    model = tiny_bert(dropout=0.3)
    build_algorithm(model, Params.from_dict({"algorithm": "anil"}), None, _Tokenizer())
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}


def test_dropout_sets_every_layer_attention_included():
    model = tiny_bert(dropout=0.3)
    build_algorithm(model, Params.from_dict({"algorithm": "anil", "dropout": 0.05}), None, _Tokenizer())
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert any("attention.self" in name for name in rates) and set(rates.values()) == {0.05}


def test_attention_dropout_sets_the_attention_layers_alone():
    model = tiny_bert(dropout=0.3)
    params = Params.from_dict({"algorithm": "anil", "dropout": 0.2, "attention_dropout": 0.0})
    build_algorithm(model, params, None, _Tokenizer())
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    attention = {name: p for name, p in rates.items() if "attention.self" in name}
    others = {name: p for name, p in rates.items() if name not in attention}
    assert attention and set(attention.values()) == {0.0}
    # Hidden-state dropout (embeddings, attention output, feed-forward output, classifier) keeps params.dropout.
    assert any("attention.output" in name for name in others) and set(others.values()) == {0.2}


def test_attention_dropout_zero_still_drops_hidden_states():
    model = tiny_bert(dropout=0.3)
    build_algorithm(model, Params.from_dict({"algorithm": "anil", "attention_dropout": 0.0}), None, _Tokenizer())
    batch = collate(episode(seed=1).support.input_ids, 0)
    first, second = _train_mode_logits(model, batch)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_attention_dropout_out_of_range_is_refused(value):
    from kshot.errors import ConfigError

    with pytest.raises(ConfigError, match="attention_dropout"):
        Params.from_dict({"algorithm": "anil", "attention_dropout": value}).validate()


def test_attention_dropout_on_a_model_without_attention_dropout_layers_is_refused():
    from kshot.errors import ConfigError

    model = tiny_bert(dropout=0.3)
    for parent in model.modules():
        if type(parent).__name__.endswith("Attention") and hasattr(parent, "dropout"):
            parent.dropout = torch.nn.Identity()  # as in a model whose attention applies no dropout layer
    with pytest.raises(ConfigError, match="no dropout layer"):
        build_algorithm(model, Params.from_dict({"algorithm": "anil", "attention_dropout": 0.0}), None, _Tokenizer())
