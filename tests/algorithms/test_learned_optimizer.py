"""The learned optimizer's functional core: its meta-gradient, its SGD/Adam special cases, checkpointing
of the unroll, truncation and tied weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from kshot.algorithms.learned_optimizer import (
    LearnedOptimizer,
    LoptConfig,
    UnrollOptions,
    adapt_weights,
    meta_gradients,
    model_loss_fn,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: threads only add overhead (and contention on a shared machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bert(hidden: int = 8, dtype=torch.float64, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=20,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).to(dtype)


def batches(n: int, seed: int = 1, size: int = 4, length: int = 6) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(5, 20, (size, length), generator=g),
            "attention_mask": torch.ones(size, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (size,), generator=g),
        }
        for _ in range(n)
    ]


def random_lopt(
    kind: str = "mlp", names=None, dtype=torch.float64, max_step: float | None = 0.05, seed: int = 3
) -> LearnedOptimizer:
    """A learned optimizer whose every part is active (a fresh one's network output is zero)."""
    torch.manual_seed(seed)
    lopt = LearnedOptimizer(LoptConfig(kind=kind, hidden=4, max_step=max_step, init_lr=0.05), names).to(dtype)
    with torch.no_grad():
        nn.init.normal_(lopt.out.weight, std=0.3)
        lopt.out.bias.fill_(0.01)
        lopt.c_adam.fill_(0.5)
        if len(lopt.log_scale):
            lopt.log_scale.normal_(std=0.2)
    return lopt


def weights_of(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def meta_loss(lopt, loss_fn, init, support, query) -> float:
    adapted, _ = adapt_weights(lopt, loss_fn, init, support)
    with torch.no_grad():
        return float(sum(w * loss_fn(adapted, b) for b, w in query))


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_meta_gradient_matches_finite_differences(kind):
    model = tiny_bert()
    init = weights_of(model)
    lopt = random_lopt(kind, list(init))
    loss_fn = model_loss_fn(model)
    support, query = batches(3), [(b, 1.0) for b in batches(1, seed=9)]
    result = meta_gradients(lopt, loss_fn, init, support, query, UnrollOptions())
    # Directional derivative along a random direction in φ, and one in θ.
    torch.manual_seed(5)
    phi = list(lopt.parameters())
    u = [torch.randn_like(p) for p in phi]
    analytic = sum(float((g * d).sum()) for g, d in zip(result.lopt, u))
    eps = 1e-6
    with torch.no_grad():
        torch._foreach_add_(phi, u, alpha=eps)
        plus = meta_loss(lopt, loss_fn, init, support, query)
        torch._foreach_add_(phi, u, alpha=-2 * eps)
        minus = meta_loss(lopt, loss_fn, init, support, query)
        torch._foreach_add_(phi, u, alpha=eps)
    numeric = (plus - minus) / (2 * eps)
    assert abs(analytic) > 1e-4  # the check is not vacuous
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)

    # The log-magnitude features of values near zero (e.g. zero-initialised biases) make the loss
    # sharply curved in θ: a smaller step keeps the central difference accurate.
    w = {n: torch.randn_like(p) for n, p in init.items()}
    analytic = sum(float((result.init[n] * w[n]).sum()) for n in init)

    def shifted(s):
        return {n: p + s * w[n] for n, p in init.items()}

    eps = 1e-8
    numeric = (
        meta_loss(lopt, loss_fn, shifted(eps), support, query) - meta_loss(lopt, loss_fn, shifted(-eps), support, query)
    ) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_checkpointed_unroll_gives_the_same_meta_gradient(kind, first_order):
    model = tiny_bert()
    init = weights_of(model)
    lopt = random_lopt(kind, list(init))
    loss_fn = model_loss_fn(model)
    support, query = batches(5), [(b, 1.0) for b in batches(1, seed=9)]
    plain = meta_gradients(
        lopt, loss_fn, init, support, query, UnrollOptions(first_order=first_order, path_loss_weight=0.5)
    )
    for segment, network in ((1, False), (2, False), (2, True), (0, True)):
        options = UnrollOptions(
            first_order=first_order, path_loss_weight=0.5, checkpoint_segment=segment, checkpoint_network=network
        )
        ckpt = meta_gradients(lopt, loss_fn, init, support, query, options)
        assert ckpt.query_loss == pytest.approx(plain.query_loss, rel=1e-12)
        assert ckpt.support_loss == pytest.approx(plain.support_loss, rel=1e-12)
        for a, b in zip(ckpt.lopt, plain.lopt):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        for n in init:
            torch.testing.assert_close(ckpt.init[n], plain.init[n], rtol=1e-9, atol=1e-12)


def test_first_order_and_truncation_drop_terms_but_keep_a_useful_gradient():
    model = tiny_bert()
    init = weights_of(model)
    lopt = random_lopt("mlp", list(init))
    loss_fn = model_loss_fn(model)
    support, query = batches(4), [(b, 1.0) for b in batches(1, seed=9)]
    full = meta_gradients(lopt, loss_fn, init, support, query, UnrollOptions())
    first = meta_gradients(lopt, loss_fn, init, support, query, UnrollOptions(first_order=True))
    last = meta_gradients(lopt, loss_fn, init, support, query, UnrollOptions(truncate=1))

    def flat(gs):
        return torch.cat([g.reshape(-1) for g in gs])

    for approx in (first, last):
        assert approx.query_loss == pytest.approx(full.query_loss, rel=1e-12)  # same forward pass
        assert not torch.allclose(flat(approx.lopt), flat(full.lopt))
        # Still a descent direction for the optimizer's weights.
        assert float(flat(approx.lopt) @ flat(full.lopt)) > 0
    # A truncation as long as the unroll is no truncation.
    whole = meta_gradients(lopt, loss_fn, init, support, query, UnrollOptions(truncate=len(support)))
    torch.testing.assert_close(flat(whole.lopt), flat(full.lopt), rtol=0, atol=0)


def test_weights_set_to_sgd_reproduce_sgd_step_for_step():
    model = tiny_bert(dtype=torch.float32)
    init = weights_of(model)
    lopt = LearnedOptimizer(LoptConfig(hidden=4, max_step=None), list(init))
    lopt.set_rule(sgd=1.0, adam=0.0, lr=0.1)
    loss_fn = model_loss_fn(model)
    support = batches(4)
    reference = tiny_bert(dtype=torch.float32)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for steps in range(1, 5):
        adapted, _ = adapt_weights(lopt, loss_fn, init, support[:steps])
        reference(**support[steps - 1]).loss.backward()
        opt.step()
        opt.zero_grad()
        for n, p in reference.named_parameters():
            torch.testing.assert_close(adapted[n], p.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(adapted["classifier.weight"], init["classifier.weight"])


def test_weights_set_to_adam_reproduce_adam():
    model = tiny_bert(dtype=torch.float32)
    init = weights_of(model)
    lopt = LearnedOptimizer(LoptConfig(hidden=4, max_step=None, init_rule="adam", init_lr=1e-2), list(init))
    adapted, _ = adapt_weights(lopt, model_loss_fn(model), init, batches(4))
    reference = tiny_bert(dtype=torch.float32)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for batch in batches(4):
        reference(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in reference.named_parameters():
        torch.testing.assert_close(adapted[n], p.detach(), rtol=1e-4, atol=1e-5)


def test_updates_are_bounded_by_max_step():
    model = tiny_bert()
    init = weights_of(model)
    lopt = LearnedOptimizer(LoptConfig(hidden=4, max_step=1e-3), list(init)).to(torch.float64)
    lopt.set_rule(sgd=1.0, adam=0.0, lr=1e3)  # a wildly large rate
    adapted, _ = adapt_weights(lopt, model_loss_fn(model), init, batches(3))
    moved = max(float((adapted[n] - init[n]).abs().max()) for n in init)
    assert 2.9e-3 < moved <= 3e-3 + 1e-12  # three steps of at most 1e-3 each, and the bound is reached


class TiedLM(nn.Module):
    """Input and output embeddings are one Parameter."""

    def __init__(self, vocab: int = 11, dim: int = 6):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.unembed = nn.Linear(dim, vocab, bias=False)
        self.unembed.weight = self.embed.weight

    def forward(self, input_ids, labels):
        logits = self.unembed(torch.tanh(self.mix(self.embed(input_ids))))
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def test_tied_weights_stay_tied_and_get_the_summed_gradient():
    torch.manual_seed(0)
    model = TiedLM()
    init = weights_of(model)
    assert "unembed.weight" not in init  # one entry per distinct tensor

    def loss_fn(params, batch, double_backward=False):
        return functional_call(model, params, (), batch, tie_weights=True, strict=False)

    g = torch.Generator().manual_seed(1)
    support = [
        {"input_ids": torch.randint(0, 11, (3, 5), generator=g), "labels": torch.randint(0, 11, (3, 5), generator=g)}
        for _ in range(3)
    ]
    lopt = LearnedOptimizer(LoptConfig(hidden=4, max_step=None), list(init))
    lopt.set_rule(sgd=1.0, adam=0.0, lr=0.5)
    adapted, _ = adapt_weights(lopt, loss_fn, init, support)

    reference = TiedLM()
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    for batch in support:
        reference(**batch).backward()
        opt.step()
        opt.zero_grad()
    assert reference.unembed.weight is reference.embed.weight
    for n, p in reference.named_parameters():
        torch.testing.assert_close(adapted[n], p.detach())
    # Written back into the module, the two uses still share one tensor.
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(adapted[n])
    assert model.unembed.weight is model.embed.weight
    # Meta-gradients also flow through both uses.
    result = meta_gradients(
        random_lopt("mlp", list(init), dtype=torch.float32),
        loss_fn,
        init,
        support,
        [(support[0], 1.0)],
        UnrollOptions(),
    )
    assert torch.isfinite(result.init["embed.weight"]).all() and result.init["embed.weight"].abs().sum() > 0


def test_tied_embeddings_of_a_masked_lm_stay_tied():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForMaskedLM(config)
    decoder, embeddings = model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight
    assert decoder is embeddings
    init = weights_of(model)

    def loss_fn(params, batch, double_backward=False):
        return functional_call(model, params, (), batch, tie_weights=True, strict=False).loss

    batch = batches(1)[0]
    support = [{"input_ids": batch["input_ids"], "labels": batch["input_ids"]}] * 2
    lopt = LearnedOptimizer(LoptConfig(hidden=4, max_step=None), list(init))
    lopt.set_rule(sgd=1.0, adam=0.0, lr=0.5)
    adapted, _ = adapt_weights(lopt, loss_fn, init, support)
    reference = BertForMaskedLM(config)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    for b in support:
        reference(**b).loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in reference.named_parameters():
        torch.testing.assert_close(adapted[n], p.detach(), rtol=1e-5, atol=1e-6)
    assert reference.cls.predictions.decoder.weight is reference.bert.embeddings.word_embeddings.weight
