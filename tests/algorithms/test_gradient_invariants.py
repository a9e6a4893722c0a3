"""The meta-gradients of maml, fomaml, metasgd and anil against references computed independently:
finite differences, hand-run SGD, Hessian-vector products and plain training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from kshot.algorithms.base import support_batches
from kshot.algorithms.functional import head_names, loss_of
from kshot.data import collate

from .gradient_helpers import BagOfWords, build, episode, flat, params, tiny_bert

MODELS = {"bert": tiny_bert, "bag_of_words": BagOfWords}


def query_batch(ep):
    return collate(ep.query.input_ids, 0, ep.query.labels)


def meta_objective(alg, ep) -> float:
    """J(θ) = L_query(θ′(θ)), evaluated with the algorithm's own inner loop."""
    adapted, _ = alg.inner(ep.support, alg.params.inner_steps, ep.seed, track_meta=True)
    return float(loss_of(alg.model, adapted, query_batch(ep)).detach())


def directional_fd(alg, ep, direction, eps=1e-6) -> float:
    meta = list(alg.meta.values())

    def shifted(alpha: float) -> float:
        with torch.no_grad():
            torch._foreach_add_(meta, direction, alpha=alpha)
        try:
            return meta_objective(alg, ep)
        finally:
            with torch.no_grad():
                torch._foreach_add_(meta, direction, alpha=-alpha)

    return (shifted(eps) - shifted(-eps)) / (2 * eps)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("inner_optimizer", ["sgd", "adam"])
def test_maml_meta_gradient_matches_finite_differences(model_name, inner_optimizer):
    lr = 0.5 if inner_optimizer == "sgd" else 0.05
    # Adam's normalised step g/(|g|+1e-8) bends sharply where a gradient is tiny: a smaller step.
    fd_eps = 1e-6 if inner_optimizer == "sgd" else 1e-8
    alg = build("maml", MODELS[model_name](), inner_optimizer=inner_optimizer, inner_lr=lr, inner_steps=2)
    ep = episode(seed=3)
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    fo = build("fomaml", copy.deepcopy(alg.model), inner_optimizer=inner_optimizer, inner_lr=lr, inner_steps=2)
    fo_grads, _ = fo.meta_gradients([ep], total_tasks=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in alg.meta.values()]
        fd = directional_fd(alg, ep, direction, fd_eps)
        analytic = float(flat(grads) @ flat(direction))
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)
        # The check can fail: the first-order gradient misses the second-order terms.
        first_order = float(flat(fo_grads) @ flat(direction))
        assert abs(first_order - fd) > 1e-3 * max(abs(fd), 1e-3)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_fomaml_gradient_is_query_gradient_after_hand_run_sgd(model_name):
    model = MODELS[model_name]()
    p = params(inner_steps=3, inner_batch_size=4)
    ep = episode(seed=5)
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(reference.parameters(), lr=p.inner_lr)
    for batch in support_batches(ep.support, p.inner_steps, p.inner_batch_size, 0, np.random.default_rng(ep.seed)):
        opt.zero_grad()
        reference(**batch).loss.backward()
        opt.step()
    opt.zero_grad()
    reference(**query_batch(ep)).loss.backward()
    expected = [q.grad for q in reference.parameters()]

    fomaml = build("fomaml", model, inner_steps=3, inner_batch_size=4)
    grads, _ = fomaml.meta_gradients([ep], total_tasks=1)
    torch.testing.assert_close(flat(grads), flat(expected), rtol=1e-9, atol=1e-12)
    maml_fo = build("maml", copy.deepcopy(model), inner_steps=3, inner_batch_size=4, first_order=True)
    torch.testing.assert_close(flat(maml_fo.meta_gradients([ep], 1)[0]), flat(expected), rtol=1e-9, atol=1e-12)
    truncated_to_zero = build("maml", copy.deepcopy(model), inner_steps=3, inner_batch_size=4, second_order_steps=0)
    torch.testing.assert_close(
        flat(truncated_to_zero.meta_gradients([ep], 1)[0]), flat(expected), rtol=1e-9, atol=1e-12
    )


def test_truncated_second_order_matches_hessian_vector_reference():
    """Two SGD steps, second order through the last one only: g = u − lr·H₁u, with u = ∇L_q(θ₂) and
    H₁ the support-loss Hessian at θ₁ (reached by a first-order step)."""
    model = tiny_bert()
    p = params(inner_steps=2, inner_batch_size=6, inner_lr=0.5)
    ep = episode(seed=7)
    batches = list(support_batches(ep.support, 2, p.inner_batch_size, 0, np.random.default_rng(ep.seed)))
    names = [n for n, _ in model.named_parameters()]
    theta = [q.detach().clone() for q in model.parameters()]

    def loss_at(values, batch, twice=False):
        return loss_of(model, dict(zip(names, values)), batch, double_backward=twice)

    g0 = torch.autograd.grad(loss_at([t.requires_grad_() for t in theta], batches[0]), theta)
    theta1 = [(t - p.inner_lr * g).detach().requires_grad_() for t, g in zip(theta, g0)]
    g1 = torch.autograd.grad(loss_at(theta1, batches[1]), theta1)
    theta2 = [(t - p.inner_lr * g).detach().requires_grad_() for t, g in zip(theta1, g1)]
    u = torch.autograd.grad(loss_at(theta2, query_batch(ep)), theta2)
    _, hvp = torch.autograd.functional.vhp(lambda *v: loss_at(list(v), batches[1], twice=True), tuple(theta1), tuple(u))
    expected = [a - p.inner_lr * b for a, b in zip(u, hvp)]

    alg = build("maml", model, inner_steps=2, inner_batch_size=6, second_order_steps=1)
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    torch.testing.assert_close(flat(grads), flat(expected), rtol=1e-8, atol=1e-11)
    full = build("maml", copy.deepcopy(model), inner_steps=2, inner_batch_size=6)
    assert not torch.allclose(flat(full.meta_gradients([ep], 1)[0]), flat(expected), rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "metasgd", "anil"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_no_inner_steps_is_plain_training_on_the_query_set(algorithm, model_name):
    model = MODELS[model_name]()
    ep = episode(seed=11)
    plain = copy.deepcopy(model)
    plain(**query_batch(ep)).loss.backward()
    expected = [q.grad for q in plain.parameters()]

    alg = build(algorithm, model, inner_steps=0)
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    n = len(expected)
    torch.testing.assert_close(flat(grads[:n]), flat(expected), rtol=1e-10, atol=1e-13)
    if algorithm == "metasgd":  # the learned rates had nothing to act on
        assert float(flat(grads[n:]).abs().max()) == 0.0


def test_meta_gradient_is_the_mean_over_tasks():
    model = tiny_bert()
    eps = [episode(seed=s) for s in (1, 2, 3)]
    alg = build("maml", model)
    together, _ = alg.meta_gradients(eps, total_tasks=3)
    separate = [flat(alg.meta_gradients([e], total_tasks=1)[0]) for e in eps]
    torch.testing.assert_close(flat(together), sum(separate) / 3, rtol=1e-10, atol=1e-13)


def test_gradient_checkpointing_gives_the_same_meta_gradient():
    from types import SimpleNamespace

    from kshot.training.setup import build_algorithm

    ep = episode(seed=4)
    results = []
    for checkpointing in (False, True):
        model = tiny_bert(dropout=0.1)  # dropout on: the recomputation must replay the same masks
        alg = build_algorithm(
            model, params(algorithm="maml", gradient_checkpointing=checkpointing), None, SimpleNamespace(pad_token_id=0)
        )
        results.append(flat(alg.meta_gradients([ep], total_tasks=1)[0]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_anil_inner_loop_leaves_the_body_untouched(model_name):
    model = MODELS[model_name]()
    alg = build("anil", model, inner_steps=3)
    head = set(head_names(model))
    assert head and all(not n.startswith(model.base_model_prefix + ".") for n in head)
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    ep = episode(seed=2)
    for track_meta in (True, False):
        adapted, _ = alg.inner(ep.support, 3, ep.seed, track_meta=track_meta)
        for n, value in adapted.items():
            if n in head:
                assert not torch.equal(value.detach(), before[n]), n
            else:
                assert torch.equal(value.detach(), before[n]), n
    # …while the outer loop does train the body (through the head's adaptation).
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    body = [g for (n, _), g in zip(model.named_parameters(), grads) if n not in head]
    assert float(flat(body).abs().max()) > 0


def test_metasgd_learning_rates_receive_gradients_and_change():
    alg = build("metasgd", tiny_bert(), metasgd_init_lr=0.3, metasgd_lr_lr=0.01)
    start = flat([t.detach() for t in alg.lrs.values()])
    assert torch.all(start == 0.3)
    grads, _ = alg.meta_gradients([episode(seed=1)], total_tasks=1)
    lr_grads = flat(grads[len(alg.meta) :])
    assert lr_grads.numel() == start.numel() and float(lr_grads.abs().max()) > 0
    alg.meta_step([episode(seed=1), episode(seed=2)], step=0, total_tasks=2)
    moved = flat([t.detach() for t in alg.lrs.values()]) - start
    assert float(moved.abs().max()) == pytest.approx(0.01, rel=1e-3)  # Adam's first step: ±lr
    assert float((moved != 0).float().mean()) > 0.5


def test_adapt_starts_from_the_meta_parameters_and_reset_forgets():
    model = tiny_bert()
    alg = build("maml", model)
    ep = episode(seed=8)
    before = alg.predict(ep.query, batch_size=4)
    alg.adapt(ep.support, steps=3, seed=1)
    adapted = alg.predict(ep.query, batch_size=4)
    assert not np.allclose(before, adapted)
    alg.reset()
    np.testing.assert_allclose(alg.predict(ep.query, batch_size=4), before)
    alg.adapt(ep.support, steps=3, seed=1)  # adapting again gives the same weights: θ was not moved
    np.testing.assert_allclose(alg.predict(ep.query, batch_size=4), adapted)
    exported = alg.export_model(adapted=True)
    assert exported is not model
    with torch.no_grad():
        direct = exported(**query_batch(ep)).logits.numpy()
    np.testing.assert_allclose(direct, adapted, rtol=1e-6)


def test_episodes_without_query_examples_are_refused_with_the_field_to_change():
    from kshot.errors import ConfigError

    alg = build("maml", BagOfWords())
    ep = episode()
    ep.query = ep.query.subset(np.array([], dtype=np.int64))
    with pytest.raises(ConfigError, match="k_query"):
        alg.meta_step([ep], step=0, total_tasks=1)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_anil_runs_the_body_once_per_task_with_the_same_meta_gradient(model_name, first_order):
    from kshot.algorithms.gradient import GradientMetaLearner

    model = MODELS[model_name]()
    alg = build("anil", model, inner_steps=4, inner_batch_size=4, first_order=first_order)
    assert alg.head_module_name == "classifier"
    body = getattr(model, model.base_model_prefix)
    calls = []
    next(m for m in body.modules() if isinstance(m, torch.nn.Embedding)).register_forward_hook(
        lambda *_: calls.append(1)
    )
    ep = episode(seed=5)
    fast, _ = alg.meta_gradients([ep], total_tasks=1)
    assert len(calls) == 2  # the support once for all 4 inner steps, then the query
    # The reference: the whole model run at every inner step (what maml's inner loop does).
    alg.inner = lambda *args, **kwargs: GradientMetaLearner.inner(alg, *args, **kwargs)
    slow, _ = alg.meta_gradients([ep], total_tasks=1)
    assert len(calls) == 2 + 4 + 1
    torch.testing.assert_close(flat(fast), flat(slow), rtol=1e-9, atol=1e-12)
    assert float(flat(fast[: len(alg.meta) - 2]).abs().max()) > 0  # the body is meta-trained


class TwoModuleHead(BagOfWords):
    """A head spread over two modules with an activation between them (as DistilBERT's)."""

    def __init__(self):
        super().__init__()
        self.pre_classifier = torch.nn.Linear(6, 6).double()

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).to(self.classifier.weight.dtype)
        pooled = (self.body["embed"](input_ids) * mask).sum(1) / mask.sum(1)
        logits = self.classifier(torch.relu(self.pre_classifier(torch.tanh(self.body["mix"](pooled)))))
        return SequenceClassifierOutput(logits=logits)


def test_anil_with_a_head_of_several_modules_runs_the_whole_model_each_step():
    model = TwoModuleHead()
    alg = build("anil", model, inner_steps=3)
    assert alg.head_module_name is None
    assert set(head_names(model)) == {
        "classifier.weight",
        "classifier.bias",
        "pre_classifier.weight",
        "pre_classifier.bias",
    }
    ep = episode(seed=2)
    adapted, losses = alg.inner(ep.support, 3, ep.seed, track_meta=True)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all(adapted[n] is q for n, q in model.named_parameters() if n.startswith("body."))
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    assert float(flat(grads).abs().max()) > 0


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_anil_prototype_head_scores_minus_the_squared_distance_to_each_class_mean(scale):
    model = BagOfWords()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    alg = build("anil", model, anil_head_init="prototypes", anil_prototype_scale=scale, inner_steps=0)
    ep = episode(seed=4)
    alg.adapt(ep.support, steps=0, seed=ep.seed)
    features = []
    hook = model.classifier.register_forward_pre_hook(lambda _m, args: features.append(args[0]) and None)
    with torch.no_grad():
        model(**collate(ep.support.input_ids, 0))
        model(**query_batch(ep))
    hook.remove()
    support, query = features
    labels = torch.as_tensor(ep.support.labels)
    means = torch.stack([support[labels == c].mean(0) for c in range(2)])
    expected = (-scale * torch.cdist(query, means) ** 2).float()
    logits = torch.as_tensor(alg.predict(ep.query, batch_size=4))  # float32, as predictions are
    # Equal up to ‖x‖², which is the same for every class of a query example.
    torch.testing.assert_close(logits - logits[:, :1], expected - expected[:, :1], rtol=1e-5, atol=1e-5)


def test_anil_prototype_head_keeps_the_meta_learned_head_and_trains_the_body_through_the_means():
    model = BagOfWords()
    alg = build("anil", model, anil_head_init="prototypes", inner_steps=2)
    plain = build("anil", copy.deepcopy(model), inner_steps=2)
    ep = episode(seed=6)
    grads, _ = alg.meta_gradients([ep], total_tasks=1)
    plain_grads, _ = plain.meta_gradients([ep], total_tasks=1)
    names = [n for n, _ in model.named_parameters()]
    by_name = dict(zip(names, grads))
    assert float(by_name["classifier.weight"].abs().max()) > 0  # the meta-learned head still learns
    assert not torch.allclose(flat(grads), flat(plain_grads))  # and the means change the body's gradient
    direction = [
        torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=p.dtype) for p in alg.meta.values()
    ]
    analytic = float(sum((g * d).sum() for g, d in zip(grads, direction)))
    assert analytic == pytest.approx(directional_fd(alg, ep, direction), rel=1e-5, abs=1e-9)


def test_anil_prototype_head_needs_a_single_linear_head():
    from kshot.errors import ConfigError

    with pytest.raises(ConfigError, match="anil_head_init='meta'"):
        build("anil", TwoModuleHead(), anil_head_init="prototypes")


def test_anil_prototype_head_leaves_a_class_without_support_examples_at_the_meta_learned_row():
    model = BagOfWords()
    alg = build("anil", model, anil_head_init="prototypes")
    features = torch.randn(4, 6, dtype=torch.float64)
    head = alg.prototype_head(dict(alg.meta), features, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(head["classifier.weight"][1], model.classifier.weight[1])
    torch.testing.assert_close(head["classifier.bias"][1], model.classifier.bias[1])
    torch.testing.assert_close(head["classifier.weight"][0], model.classifier.weight[0] + 2 * features.mean(0))


@pytest.mark.parametrize(
    ("algorithm", "changes"),
    [
        ("maml", {"inner_optimizer": "sgd", "inner_lr": 0.5}),
        ("maml", {"inner_optimizer": "adam", "inner_lr": 0.05}),
        ("maml", {"inner_optimizer": "adam", "inner_lr": 0.05, "second_order_steps": 2}),  # first steps first-order
        ("maml", {"inner_optimizer": "sgd", "inner_lr": 0.5, "max_grad_norm": 0.05}),  # clipping in the graph
        ("metasgd", {"inner_optimizer": "sgd", "inner_lr": 0.5}),  # learned rates get their gradient too
    ],
)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_recomputed_second_order_steps_give_the_one_graph_meta_gradient(algorithm, changes, dropout):
    """gradient_checkpointing runs each second-order step again in the backward pass (one step's graph held at
    a time): the meta-gradient, query loss and support losses are those of the one-graph path, dropout masks
    included (each step re-drawn from its saved random state)."""
    ep = episode(seed=6)
    results = []
    for checkpointed in (False, True):
        alg = build(
            algorithm, tiny_bert(dropout=dropout), inner_steps=3, gradient_checkpointing=checkpointed, **changes
        )
        assert alg.recomputes_steps() == checkpointed
        torch.manual_seed(123)
        grads, metrics = alg.meta_gradients([ep], total_tasks=1)
        results.append((flat(grads), metrics))
    (reference, ref_metrics), (value, metrics) = results
    assert torch.allclose(value, reference, rtol=1e-9, atol=1e-12)
    assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-12)
    assert metrics["support_loss"] == pytest.approx(ref_metrics["support_loss"], rel=1e-12)
    assert float(reference.norm()) > 0
