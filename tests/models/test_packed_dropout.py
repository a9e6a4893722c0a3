"""Packed dropout masks: torch's dropout in distribution (keep rate, independent lanes, unbiased output),
reproducible from torch's seed, the same attention as SDPA without dropout and the eager product with its
mask, and a model whose saved folder is unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from kshot.config import Params
from kshot.models.packed_dropout import (
    ATTENTION,
    LANES,
    PackedDropout,
    drop_threshold,
    packed_dropout,
    packed_dropout_attention,
    packed_keep_mask,
    use_packed_dropout,
)
from kshot.training.setup import _enable_gradient_checkpointing, build_algorithm, packed_dropout_masks, set_dropout

N = 1 << 20


def tiny_bert(seed: int = 0, **overrides) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
        **overrides,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 60, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0  # padding: the mask format must be honoured
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_element_and_each_lane_is_kept_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = packed_keep_mask((N,), p).float()
    exact = 1 - round(p * 65536) / 65536
    assert abs(exact - (1 - p)) <= 1 / 131072
    sigma = (exact * (1 - exact) / N) ** 0.5
    assert abs(keep.mean().item() - exact) < 5 * sigma
    # Every 16-bit lane of a 64-bit draw, the top one included (whose sign bit random_() would leave 0).
    lanes = keep.view(-1, LANES)
    lane_sigma = (exact * (1 - exact) / lanes.shape[0]) ** 0.5
    for lane in range(LANES):
        assert abs(lanes[:, lane].mean().item() - exact) < 5 * lane_sigma, lane


def test_the_lanes_of_one_draw_and_neighbouring_draws_are_uncorrelated():
    torch.manual_seed(1)
    keep = packed_keep_mask((N,), 0.3).float()
    limit = 5 / (N // LANES) ** 0.5  # five standard errors of a correlation coefficient
    for shift in (1, 2, 3, 4, 5):
        corr = torch.corrcoef(torch.stack([keep[:-shift], keep[shift:]]))[0, 1].item()
        assert abs(corr) < limit, (shift, corr)


def test_kept_values_are_scaled_so_the_output_is_unbiased_and_its_gradient_is_the_mask():
    torch.manual_seed(2)
    x = torch.full((N,), 2.0, requires_grad=True)
    y = packed_dropout(x, 0.1)
    _, scale = drop_threshold(0.1)
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(2.0 * scale))
    assert abs(y.mean().item() - 2.0) < 0.01  # standard error about 0.0006
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * scale)


def test_masks_follow_torchs_seed_and_dropout_off_is_the_identity():
    x = torch.randn(64, 33)
    torch.manual_seed(5)
    a = packed_dropout(x, 0.2)
    torch.manual_seed(5)
    b = packed_dropout(x, 0.2)
    torch.manual_seed(6)
    c = packed_dropout(x, 0.2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert packed_dropout(x, 0.2, training=False) is x
    assert packed_dropout(x, 0.0) is x
    assert torch.equal(packed_dropout(x, 1.0), torch.zeros_like(x))
    # The mask does not depend on the dtype: a bf16 run drops what a float32 run with its seed drops.
    ones = torch.ones(64, 33)
    torch.manual_seed(5)
    kept32 = packed_dropout(ones, 0.2) != 0
    torch.manual_seed(5)
    kept16 = packed_dropout(ones.bfloat16(), 0.2) != 0
    assert torch.equal(kept32, kept16) and torch.equal(kept32, a != 0)


def test_attention_with_dropout_is_softmax_qk_times_v_with_the_packed_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    allowed = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    allowed[1, :, :, 4:] = False  # the second text's last two tokens are padding
    torch.manual_seed(7)
    out, weights = packed_dropout_attention(torch.nn.Module(), q, k, v, allowed, dropout=0.25)
    torch.manual_seed(7)
    keep = packed_keep_mask((2, 4, 6, 6), 0.25)
    _, scale = drop_threshold(0.25)
    scores = (q @ k.transpose(2, 3)) / 8**0.5
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    expected = ((probs * keep * scale) @ v).transpose(1, 2)
    assert weights is None
    assert torch.allclose(out, expected, atol=1e-6)
    # No dropout: transformers' SDPA, whose output is the same product without a mask.
    out0, _ = packed_dropout_attention(torch.nn.Module(), q, k, v, allowed, dropout=0.0)
    assert torch.allclose(out0, (probs @ v).transpose(1, 2), atol=1e-5)


def test_a_switched_model_computes_what_sdpa_does_without_dropout_and_reproducibly_with_it():
    model, reference = tiny_bert(), tiny_bert()
    switched = use_packed_dropout(model)
    assert switched == {"layers": 8, "attention": True}  # embeddings, 3 per layer (attention, 2 outputs), classifier
    assert model.config._attn_implementation == ATTENTION
    assert all(type(m) is PackedDropout for m in model.modules() if isinstance(m, torch.nn.Dropout))
    model.eval(), reference.eval()
    inputs = batch()
    assert torch.allclose(model(**inputs).logits, reference(**inputs).logits, atol=1e-6)
    model.train()
    torch.manual_seed(11)
    a = model(**inputs).logits
    torch.manual_seed(11)
    b = model(**inputs).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, reference.eval()(**inputs).logits, atol=1e-3)  # dropout is on
    # set_dropout (params.dropout) still reaches the switched layers: at p = 0 training equals evaluation.
    set_dropout(model, 0.0)
    assert torch.allclose(model(**inputs).logits, reference(**inputs).logits, atol=1e-6)


def test_gradient_checkpointing_replays_the_same_masks():
    inputs = batch()
    labels = torch.tensor([0, 1, 2, 1])
    grads = []
    for checkpointing in (False, True):
        model = tiny_bert()
        use_packed_dropout(model)
        if checkpointing:
            _enable_gradient_checkpointing(model)
        model.train()
        torch.manual_seed(3)
        model(**inputs, labels=labels).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_a_saved_switched_model_is_a_plain_folder_that_loads_without_kshot(tmp_path):
    model = tiny_bert()
    use_packed_dropout(model)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert ATTENTION not in json.dumps(saved)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config._attn_implementation == "sdpa"
    assert not any(type(m) is PackedDropout for m in loaded.modules())
    inputs = batch()
    assert torch.allclose(loaded(**inputs).logits, model.eval()(**inputs).logits, atol=1e-6)


def test_an_eager_model_keeps_its_attention_and_switches_its_dropout_layers():
    model = tiny_bert(attn_implementation="eager")
    switched = use_packed_dropout(model)
    assert switched["attention"] is False and switched["layers"] > 0
    assert model.config._attn_implementation == "eager"


def test_auto_packs_the_masks_on_the_cpu_under_bf16_only_and_build_algorithm_applies_the_choice():
    assert packed_dropout_masks("auto", "cpu", "bf16")
    assert not packed_dropout_masks("auto", "cpu", "no") and not packed_dropout_masks("auto", "cuda", "bf16")
    assert packed_dropout_masks("packed", "cuda", "no") and not packed_dropout_masks("torch", "cpu", "bf16")
    # No accelerator: float32 on the CPU, where auto keeps torch's masks.
    for masks, packed in (("auto", False), ("packed", True), ("torch", False)):
        model = tiny_bert()
        build_algorithm(model, Params.from_dict({"algorithm": "anil", "dropout_masks": masks}), None, _Tokenizer())
        assert any(type(m) is PackedDropout for m in model.modules()) is packed
        assert (model.config._attn_implementation == ATTENTION) is packed


class _Tokenizer:
    pad_token_id = 0
