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
from ..functional import loss_of, rng_state, set_rng_state
from .network import LearnedOptimizer

Batch = dict[str, torch.Tensor]
Params = dict[str, torch.Tensor]
Slots = dict[str, tuple[torch.Tensor, ...]]
LossFn = Callable[..., torch.Tensor]  # (params, batch, double_backward=False) -> scalar loss


def model_loss_fn(model: torch.nn.Module, accelerator=None, checkpointed: bool = False) -> LossFn:
    """Mean cross-entropy of a sequence classifier with its weights replaced by ``params``.

    ``double_backward`` (a second-order step) selects the attention kernel that has second derivatives.
    """

    def loss(params: Params, batch: Batch, double_backward: bool = False) -> torch.Tensor:
        with autocast(accelerator):
            return loss_of(model, params, batch, double_backward=double_backward, checkpointed=checkpointed)

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
    init: Params | None  # d meta-loss / d initial parameters (None when not asked for)
    lopt: list[torch.Tensor]  # d meta-loss / d learned optimizer parameters, in ``parameters()`` order
    query_loss: float
    support_loss: float


def inner_step(
    lopt: LearnedOptimizer,
    loss_fn: LossFn,
    params: Params,
    slots: Slots,
    batch: Batch,
    t: int,
    *,
    track: bool,
    first_order: bool,
    loss_graph: bool = False,
    recompute: bool = False,
) -> tuple[Params, Slots, torch.Tensor]:
    """One step of the learned optimizer on ``batch`` (``t`` counts from 1).

    ``track``: record autograd history for meta-gradients; ``loss_graph``: keep the loss attached to
    ``params`` (for losses along the way in first-order mode, where the gradient itself is constant).
    """
    names = list(params)
    if track and (not first_order or loss_graph):
        loss = loss_fn(params, batch, double_backward=not first_order)
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order, retain_graph=True)
    else:
        detached = {n: p.detach().requires_grad_() for n, p in params.items()}
        with torch.enable_grad():
            loss = loss_fn(detached, batch)
            grads = torch.autograd.grad(loss, [detached[n] for n in names])
        loss = loss.detach()
    grads = dict(zip(names, grads))
    with torch.set_grad_enabled(track):
        source = params if track else {n: p.detach() for n, p in params.items()}
        new_params, new_slots = lopt.step(source, grads, slots, t, detach_inputs=first_order, recompute=recompute)
    return new_params, new_slots, loss


@torch.no_grad()
def adapt_params(
    lopt: LearnedOptimizer, loss_fn: LossFn, params: Params, batches: Sequence[Batch]
) -> tuple[Params, list[float]]:
    """Train ``params`` with the learned optimizer on ``batches`` (one step each); no meta-gradient."""
    slots = lopt.init_slots(params)
    params = {n: p.detach() for n, p in params.items()}
    losses = []
    for t, batch in enumerate(batches, start=1):
        params, slots, loss = inner_step(lopt, loss_fn, params, slots, batch, t, track=False, first_order=True)
        losses.append(float(loss))
    return params, losses


def query_loss(loss_fn: LossFn, params: Params, batches: Sequence[tuple[Batch, float]]) -> torch.Tensor:
    """Weighted sum of the query chunks' mean losses (weights: each chunk's share of the query set)."""
    return sum(w * loss_fn(params, b) for b, w in batches)


# ---------------------------------------------------------------------------------------------------
def _leaves(params: Params, slots: Slots, slots_need_grad: bool) -> tuple[Params, Slots]:
    params = {n: p.detach().requires_grad_() for n, p in params.items()}
    slots = {n: tuple(s.detach().requires_grad_(slots_need_grad) for s in ss) for n, ss in slots.items()}
    return params, slots


def _flat(params: Params, slots: Slots) -> list[torch.Tensor]:
    return list(params.values()) + [s for ss in slots.values() for s in ss]


def meta_gradients(
    lopt: LearnedOptimizer,
    loss_fn: LossFn,
    init: Params,
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

    params, slots = {n: p.detach() for n, p in init.items()}, lopt.init_slots(init)
    losses: list[float] = []
    for t in range(1, start + 1):
        params, slots, loss = inner_step(lopt, loss_fn, params, slots, support[t - 1], t, track=False, first_order=True)
        losses.append(float(loss))

    def run_segment(params: Params, slots: Slots, first: int, last: int, track: bool):
        path = torch.zeros((), device=device)
        for t in range(first + 1, last + 1):
            params, slots, loss = inner_step(
                lopt,
                loss_fn,
                params,
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
        return params, slots, path

    bounds = list(range(start, steps, segment)) or [start]
    ends = bounds[1:] + [steps]
    phi_grads = [torch.zeros_like(p) for p in phi]

    def pull_back(leaf_params, leaf_slots, out_params, out_slots, path, adj_params, adj_slots, q=None):
        """Accumulate φ's gradient and return the adjoint of the segment's input state."""
        outs, adjs = [], []
        for o, a in zip(_flat(out_params, out_slots), list(adj_params) + list(adj_slots)):
            if o.requires_grad and a is not None:
                outs.append(o)
                adjs.append(a)
        scalar = path * path_weight if loss_graph else None
        if q is not None:
            scalar = q if scalar is None else scalar + q
        if scalar is not None and scalar.requires_grad:
            outs.append(scalar)
            adjs.append(torch.ones_like(scalar))
        inputs = _flat(leaf_params, leaf_slots)
        wanted = [x for x in inputs if x.requires_grad]
        if not outs:
            return [None] * len(leaf_params), [None] * (len(inputs) - len(leaf_params))
        grads = torch.autograd.grad(outs, wanted + phi, adjs, allow_unused=True)
        for acc, g in zip(phi_grads, grads[len(wanted) :]):
            if g is not None:
                acc.add_(g)
        it = iter(grads[: len(wanted)])
        full = [next(it) if x.requires_grad else None for x in inputs]
        return full[: len(leaf_params)], full[len(leaf_params) :]

    if len(bounds) == 1:
        # No checkpointing: one recorded pass, one backward pass.
        leaf_params, leaf_slots = _leaves(params, slots, slots_need_grad)
        out_params, out_slots, path = run_segment(leaf_params, leaf_slots, start, steps, track=True)
        q = query_loss(loss_fn, out_params, query)
        adj_params, _ = pull_back(
            leaf_params,
            leaf_slots,
            out_params,
            out_slots,
            path,
            [None] * len(out_params),
            [None] * len(_flat({}, out_slots)),
            q=q,
        )
        mean_support = (sum(losses) + float(path.detach())) / max(steps, 1)
    else:
        saved = []
        for first, last in zip(bounds, ends):
            saved.append((params, slots, rng_state(device)))
            with torch.no_grad():
                params, slots, _ = run_segment(params, slots, first, last, track=False)
        final = {n: p.detach().requires_grad_() for n, p in params.items()}
        q = query_loss(loss_fn, final, query)
        end_rng = rng_state(device)  # where the generator would be without recomputation
        adj_params = list(torch.autograd.grad(q, list(final.values())))
        adj_slots: list = [None] * len(_flat({}, slots))
        for (p_in, s_in, rng), first, last in reversed(list(zip(saved, bounds, ends))):
            set_rng_state(rng, device)
            leaf_params, leaf_slots = _leaves(p_in, s_in, slots_need_grad)
            out_params, out_slots, path = run_segment(leaf_params, leaf_slots, first, last, track=True)
            adj_params, adj_slots = pull_back(
                leaf_params, leaf_slots, out_params, out_slots, path, adj_params, adj_slots
            )
        set_rng_state(end_rng, device)
        mean_support = sum(losses) / max(steps, 1)
    init_grads = None
    if want_init:
        init_grads = {n: (a if a is not None else torch.zeros_like(p)) for (n, p), a in zip(init.items(), adj_params)}
    return MetaGradients(init=init_grads, lopt=phi_grads, query_loss=float(q.detach()), support_loss=mean_support)
