"""The unrolled inner loop of the learned optimizer, and its meta-gradient.

Everything is functional: parameters are a dict name → tensor (one entry per distinct tensor, so
tied weights, e.g. input and output embeddings, are one entry and get one update) and the model is
called with ``torch.func.functional_call(..., tie_weights=True)``.

Meta-gradients are computed segment by segment, backwards: a segment of inner steps is run with
autograd recording, starting from detached copies ("leaves") of its input state, and the adjoint of
its output state is pulled back through it with ``torch.autograd.grad``. Without checkpointing the
whole unroll is one segment. With checkpointing only the states at segment boundaries are kept; each
segment is re-run (with the same random numbers) when its turn comes in the backward pass, so peak
memory holds one segment's activations instead of every step's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..base import autocast
from ..functional import ParamDict, loss_of, rng_state, set_rng_state
from .network import LearnedOptimizer

Batch = dict[str, torch.Tensor]
Slots = dict[str, tuple[torch.Tensor, ...]]
LossFn = Callable[..., torch.Tensor]  # (weights, batch, double_backward=False) -> scalar loss


def model_loss_fn(model: torch.nn.Module, accelerator=None, checkpointed: bool = False) -> LossFn:
    """Mean cross-entropy of a sequence classifier with ``weights`` in place of its own.

    ``double_backward`` (a second-order step) selects the attention kernel that has second derivatives.
    """

    def loss(weights: ParamDict, batch: Batch, double_backward: bool = False) -> torch.Tensor:
        with autocast(accelerator):
            return loss_of(model, weights, batch, double_backward=double_backward, checkpointed=checkpointed)

    return loss


@dataclass
class UnrollOptions:
    first_order: bool = False  # detach the learned optimizer's inputs: no second derivatives of the loss
    truncate: int | None = None  # back-propagate through the last n inner steps only
    checkpoint_segment: int = 0  # inner steps per recomputed segment; 0 = keep every step's activations
    checkpoint_network: bool = False  # recompute the coordinate-wise network's activations in the backward pass
    path_loss_weight: float = 0.0  # meta-loss += weight · mean support loss along the unroll


@dataclass
class MetaGradients:
    init: ParamDict | None  # d meta-loss / d initial parameters (None when not asked for)
    lopt: list[torch.Tensor]  # d meta-loss / d learned optimizer parameters, in ``parameters()`` order
    query_loss: float
    support_loss: float


def inner_step(
    lopt: LearnedOptimizer,
    loss_fn: LossFn,
    weights: ParamDict,
    slots: Slots,
    batch: Batch,
    t: int,
    *,
    track: bool,
    first_order: bool,
    loss_graph: bool = False,
    recompute: bool = False,
) -> tuple[ParamDict, Slots, torch.Tensor]:
    """One step of the learned optimizer on ``batch`` (``t`` counts from 1).

    ``track``: record autograd history for meta-gradients; ``loss_graph``: keep the loss attached to
    ``weights`` (for losses along the way in first-order mode, where the gradient itself is constant).
    """
    names = list(weights)
    if track and (not first_order or loss_graph):
        loss = loss_fn(weights, batch, double_backward=not first_order)
        grads = torch.autograd.grad(loss, [weights[n] for n in names], create_graph=not first_order, retain_graph=True)
    else:
        detached = {n: p.detach().requires_grad_() for n, p in weights.items()}
        with torch.enable_grad():
            loss = loss_fn(detached, batch)
            grads = torch.autograd.grad(loss, [detached[n] for n in names])
        loss = loss.detach()
    grads = dict(zip(names, grads))
    with torch.set_grad_enabled(track):
        source = weights if track else {n: p.detach() for n, p in weights.items()}
        new_params, new_slots = lopt.step(source, grads, slots, t, detach_inputs=first_order, recompute=recompute)
    return new_params, new_slots, loss


@torch.no_grad()
def adapt_weights(
    lopt: LearnedOptimizer, loss_fn: LossFn, weights: ParamDict, batches: Sequence[Batch]
) -> tuple[ParamDict, list[float]]:
    """Train ``weights`` with the learned optimizer on ``batches`` (one step each); no meta-gradient."""
    slots = lopt.init_slots(weights)
    weights = {n: p.detach() for n, p in weights.items()}
    losses = []
    for t, batch in enumerate(batches, start=1):
        weights, slots, loss = inner_step(lopt, loss_fn, weights, slots, batch, t, track=False, first_order=True)
        losses.append(float(loss))
    return weights, losses


def query_loss(loss_fn: LossFn, weights: ParamDict, batches: Sequence[tuple[Batch, float]]) -> torch.Tensor:
    """Weighted sum of the query chunks' mean losses (w: each chunk's share of the query set)."""
    return sum(w * loss_fn(weights, b) for b, w in batches)


# ---------------------------------------------------------------------------------------------------
def _leaves(weights: ParamDict, slots: Slots, slots_need_grad: bool) -> tuple[ParamDict, Slots]:
    weights = {n: p.detach().requires_grad_() for n, p in weights.items()}
    slots = {n: tuple(s.detach().requires_grad_(slots_need_grad) for s in ss) for n, ss in slots.items()}
    return weights, slots


def _flat(weights: ParamDict, slots: Slots) -> list[torch.Tensor]:
    return list(weights.values()) + [s for ss in slots.values() for s in ss]


def meta_gradients(
    lopt: LearnedOptimizer,
    loss_fn: LossFn,
    init: ParamDict,
    support: Sequence[Batch],
    query: Sequence[tuple[Batch, float]],
    options: UnrollOptions,
    want_init: bool = True,
) -> MetaGradients:
    """Gradients of the meta-loss (query loss after ``len(support)`` learned-optimizer steps from
    ``init``, plus optional losses along the way) w.r.t. the learned optimizer and ``init``.

    With truncation, the steps before the last ``options.truncate`` run without autograd history and
    ``init`` receives their result's gradient straight through (first-order, as in FOMAML).
    """
    first_order = options.first_order
    device = next(iter(init.values())).device
    phi = list(lopt.parameters())
    steps = len(support)
    n_graph = steps if options.truncate is None else min(options.truncate, steps)
    start = steps - n_graph
    segment = options.checkpoint_segment or max(n_graph, 1)
    path_weight = options.path_loss_weight / max(n_graph, 1)
    # First-order: the moments are functions of constant gradients, but an LSTM's hidden state
    # still depends on the network's weights, so its adjoint must cross segment boundaries.
    slots_need_grad = not first_order or lopt.config.kind == "lstm"
    loss_graph = path_weight > 0

    weights, slots = {n: p.detach() for n, p in init.items()}, lopt.init_slots(init)
    losses: list[float] = []
    for t in range(1, start + 1):
        weights, slots, loss = inner_step(
            lopt, loss_fn, weights, slots, support[t - 1], t, track=False, first_order=True
        )
        losses.append(float(loss))

    def run_segment(weights: ParamDict, slots: Slots, first: int, last: int, track: bool):
        path = torch.zeros((), device=device)
        for t in range(first + 1, last + 1):
            weights, slots, loss = inner_step(
                lopt,
                loss_fn,
                weights,
                slots,
                support[t - 1],
                t,
                track=track,
                first_order=first_order,
                loss_graph=loss_graph,
                recompute=options.checkpoint_network,
            )
            path = path + loss
            if not track:
                losses.append(float(loss))
        return weights, slots, path

    bounds = list(range(start, steps, segment)) or [start]
    ends = bounds[1:] + [steps]
    phi_grads = [torch.zeros_like(p) for p in phi]

    def pull_back(leaf_weights, leaf_slots, out_weights, out_slots, path, adj_weights, adj_slots, q=None):
        """Accumulate φ's gradient and return the adjoint of the segment's input state."""
        outs, adjs = [], []
        for o, a in zip(_flat(out_weights, out_slots), list(adj_weights) + list(adj_slots)):
            if o.requires_grad and a is not None:
                outs.append(o)
                adjs.append(a)
        scalar = path * path_weight if loss_graph else None
        if q is not None:
            scalar = q if scalar is None else scalar + q
        if scalar is not None and scalar.requires_grad:
            outs.append(scalar)
            adjs.append(torch.ones_like(scalar))
        inputs = _flat(leaf_weights, leaf_slots)
        wanted = [x for x in inputs if x.requires_grad]
        if not outs:
            return [None] * len(leaf_weights), [None] * (len(inputs) - len(leaf_weights))
        grads = torch.autograd.grad(outs, wanted + phi, adjs, allow_unused=True)
        for acc, g in zip(phi_grads, grads[len(wanted) :]):
            if g is not None:
                acc.add_(g)
        it = iter(grads[: len(wanted)])
        full = [next(it) if x.requires_grad else None for x in inputs]
        return full[: len(leaf_weights)], full[len(leaf_weights) :]

    if len(bounds) == 1:
        # No checkpointing: one recorded pass, one backward pass.
        leaf_weights, leaf_slots = _leaves(weights, slots, slots_need_grad)
        out_weights, out_slots, path = run_segment(leaf_weights, leaf_slots, start, steps, track=True)
        q = query_loss(loss_fn, out_weights, query)
        adj_weights, _ = pull_back(
            leaf_weights,
            leaf_slots,
            out_weights,
            out_slots,
            path,
            [None] * len(out_weights),
            [None] * len(_flat({}, out_slots)),
            q=q,
        )
        mean_support = (sum(losses) + float(path.detach())) / max(steps, 1)
    else:
        saved = []
        for first, last in zip(bounds, ends):
            saved.append((weights, slots, rng_state(device)))
            with torch.no_grad():
                weights, slots, _ = run_segment(weights, slots, first, last, track=False)
        final = {n: p.detach().requires_grad_() for n, p in weights.items()}
        q = query_loss(loss_fn, final, query)
        end_rng = rng_state(device)  # where the generator would be without recomputation
        adj_weights = list(torch.autograd.grad(q, list(final.values())))
        adj_slots: list = [None] * len(_flat({}, slots))
        for (p_in, s_in, rng), first, last in reversed(list(zip(saved, bounds, ends))):
            set_rng_state(rng, device)
            leaf_weights, leaf_slots = _leaves(p_in, s_in, slots_need_grad)
            out_weights, out_slots, path = run_segment(leaf_weights, leaf_slots, first, last, track=True)
            adj_weights, adj_slots = pull_back(
                leaf_weights, leaf_slots, out_weights, out_slots, path, adj_weights, adj_slots
            )
        set_rng_state(end_rng, device)
        mean_support = sum(losses) / max(steps, 1)
    init_grads = None
    if want_init:
        init_grads = {n: (a if a is not None else torch.zeros_like(p)) for (n, p), a in zip(init.items(), adj_weights)}
    return MetaGradients(init=init_grads, lopt=phi_grads, query_loss=float(q.detach()), support_loss=mean_support)
