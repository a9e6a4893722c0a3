"""The functional core of the gradient-based meta-learners (maml, fomaml, metasgd, anil, and the
learned optimizer built on top of them).

Weights live in a :data:`ParamDict` (parameter name → tensor) instead of inside the model, and the
model is run on them with :func:`torch.func.functional_call`; so any
``AutoModelForSequenceClassification`` works unchanged, and the adapted weights θ′ can stay a
differentiable function of the initialisation θ (and of learned learning rates).

Names: ``weights`` is always a :data:`ParamDict` of tensors; ``params`` is always kshot's ``Params`` (params.yaml).

The pieces, from small to large:

- :func:`trainable_names`, :func:`head_names`, :func:`weights_of` — which weights take part;
- :func:`logits_of`, :func:`loss_of` — the model run on a ParamDict;
- :class:`InnerUpdate` (:class:`SGDUpdate`, :class:`AdamUpdate`) — one inner step θ ← θ − lr·u(g),
  written with out-of-place tensor ops so it is differentiable; ``lr`` is a float or a ParamDict
  of per-element rates (Meta-SGD). A learned optimizer is another ``InnerUpdate``;
- :func:`inner_loop` — ``steps`` inner steps on support batches → θ′, with second-order terms
  switched per step (MAML, first-order MAML, truncated second order);
- :func:`query_gradients` — ∂ L_query(θ′) / ∂ (meta-tensors): the meta-gradient of one task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from ..errors import ModelError
from .loss_scale import NO_SCALING, LossScaler

ParamDict = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------- weights
def trainable_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters that are meta-learned (``requires_grad``), in ``named_parameters`` order."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def head_names(model: torch.nn.Module) -> list[str]:
    """The classification head: trainable parameters outside the pretrained body.

    Hugging Face classifiers keep the body under ``base_model_prefix`` (``bert.``, ``roberta.``, ...);
    everything else (``classifier``, ``pre_classifier``, ``score``) is the head. A model without a
    ``base_model_prefix`` names its head ``classifier``/``score``.
    """
    prefix = getattr(model, "base_model_prefix", "") or ""
    names = trainable_names(model)
    if prefix and any(n.startswith(prefix + ".") for n in names):
        head = [n for n in names if not n.startswith(prefix + ".")]
    else:
        head = [n for n in names if n.split(".")[0] in ("classifier", "score", "pre_classifier")]
    if not head or len(head) == len(names):
        raise ModelError(
            f"Cannot tell the classification head of {type(model).__name__} from its body "
            f"(base_model_prefix={prefix!r}); anil needs a model whose head parameters are outside the "
            "base model, as in every AutoModelForSequenceClassification."
        )
    return head


def weights_of(model: torch.nn.Module, names: Sequence[str] | None = None) -> ParamDict:
    """The model's own Parameters by name (the leaves gradients flow back to)."""
    named = dict(model.named_parameters())
    return {n: named[n] for n in (names if names is not None else trainable_names(model))}


# ---------------------------------------------------------------------------------------- forward
def logits_of(
    model: torch.nn.Module, weights: ParamDict, batch: Batch, double_backward: bool = False, checkpointed: bool = False
) -> torch.Tensor:
    """The model's logits with ``weights`` in place of its own weights (buffers and the rest stay).

    ``double_backward``: the graph will be differentiated twice (a second-order inner step); the
    fused attention kernels have no second derivative, so attention runs on the composite "math"
    kernel. ``checkpointed``: keep only the inputs and recompute the forward pass in the backward
    pass; the recomputation re-enters ``functional_call`` (Hugging Face's own per-layer
    checkpointing would recompute with the module's own Parameters instead).
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    names = list(weights)

    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        kernel = sdpa_kernel(SDPBackend.MATH) if double_backward else contextlib.nullcontext()
        with kernel:
            return functional_call(model, dict(zip(names, tensors)), (), inputs).logits

    tensors = [weights[n] for n in names]
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(forward, *tensors, use_reentrant=False)
    return forward(*tensors)


def loss_of(
    model: torch.nn.Module, weights: ParamDict, batch: Batch, double_backward: bool = False, checkpointed: bool = False
) -> torch.Tensor:
    """Mean cross-entropy of the model on ``batch`` (which holds ``labels``) with ``weights``."""
    return cross_entropy(logits_of(model, weights, batch, double_backward, checkpointed), batch["labels"])


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy, in float32 at least (half-precision logits are upcast, float64 kept)."""
    return F.cross_entropy(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, labels)


# ---------------------------------------------------------------------------------------- inner updates
LearningRate = float | ParamDict


def _lr(lr: LearningRate, name: str) -> float | torch.Tensor:
    return lr[name] if isinstance(lr, dict) else lr


class InnerUpdate(Protocol):
    """One differentiable inner step. ``state`` starts from :meth:`init_state` for every task."""

    def init_state(self, weights: ParamDict) -> Any: ...

    def __call__(self, weights: ParamDict, grads: ParamDict, lr: LearningRate, state: Any) -> tuple[ParamDict, Any]: ...


class SGDUpdate:
    """θ ← θ − lr·g."""

    def init_state(self, weights: ParamDict) -> None:
        return None

    def __call__(self, weights, grads, lr, state):
        return {n: p - _lr(lr, n) * grads[n] for n, p in weights.items()}, state


class AdamUpdate:
    """Adam written out of place, so the step is differentiable (second-order through the moments)."""

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.betas, self.eps = betas, eps

    def init_state(self, weights: ParamDict) -> dict[str, Any]:
        return {
            "t": 0,
            "m": {n: torch.zeros_like(p) for n, p in weights.items()},
            "v": {n: torch.zeros_like(p) for n, p in weights.items()},
        }

    def __call__(self, weights, grads, lr, state):
        b1, b2 = self.betas
        t = state["t"] + 1
        m = {n: b1 * state["m"][n] + (1 - b1) * g for n, g in grads.items()}
        v = {n: b2 * state["v"][n] + (1 - b2) * g * g for n, g in grads.items()}
        c1, c2 = 1 - b1**t, 1 - b2**t
        # sqrt(v + tiny) rather than sqrt(v): the derivative of sqrt at exactly 0 (an unused weight)
        # is infinite and would turn the second-order meta-gradient into NaN.
        new = {n: p - _lr(lr, n) * (m[n] / c1) / (torch.sqrt(v[n] / c2 + 1e-30) + self.eps) for n, p in weights.items()}
        return new, {"t": t, "m": m, "v": v}


def make_inner_update(name: str) -> InnerUpdate:
    """The inner update named by ``params.inner_optimizer``."""
    return AdamUpdate() if name == "adam" else SGDUpdate()


def clip_by_total_norm(grads: ParamDict, max_norm: float) -> ParamDict:
    """Differentiable ``clip_grad_norm_``: scale every gradient by min(1, max_norm / ‖g‖)."""
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads.values()))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return {n: g * scale.to(g.dtype) for n, g in grads.items()}


# ---------------------------------------------------------------------------------------- inner loop
def inner_loop(
    model: torch.nn.Module,
    weights: ParamDict,
    batches: Iterable[Batch],
    lr: LearningRate,
    update: InnerUpdate,
    adapt: Sequence[str] | None = None,
    second_order: Callable[[int], bool] | bool = False,
    track_meta: bool = True,
    max_grad_norm: float | None = None,
    checkpointed: bool = False,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    loss_fn: Callable[[ParamDict, Any, bool], torch.Tensor] | None = None,
    scaler: LossScaler = NO_SCALING,
) -> tuple[ParamDict, list[float]]:
    """Adapt ``weights`` with one inner step per batch; returns (θ′, the loss of every step).

    ``adapt``: names updated in the inner loop (default: all of ``weights``; anil: the head); the
    others stay the very tensors of ``weights``. ``second_order(i)``: keep the graph of step ``i``'s
    gradient (MAML), or treat that gradient as a constant (first-order MAML); a bool applies to
    every step. ``track_meta=False``: θ′ is not needed as a function of θ (adaptation at test time),
    so each step starts from detached weights and no graph is kept. ``loss_fn(weights, batch,
    double_backward)``: the step's loss (default: the model's cross-entropy on the batch; anil
    passes a loss of the head alone on features computed once). ``scaler``: fp16's loss scale; a step
    whose gradients overflow is taken again at a lower scale (see loss_scale.py).
    """
    if loss_fn is None:

        def loss_fn(current: ParamDict, batch: Batch, keep: bool) -> torch.Tensor:
            return loss_of(model, current, batch, double_backward=keep, checkpointed=checkpointed)

    names = list(adapt) if adapt is not None else list(weights)
    current = dict(weights)
    if not track_meta:
        current = {n: p.detach().requires_grad_(n in names) for n, p in current.items()}
    state = update.init_state({n: current[n].detach() for n in names})
    losses = []
    for i, batch in enumerate(batches):
        keep = second_order(i) if callable(second_order) else second_order
        keep = keep and track_meta

        def step_gradients() -> tuple[torch.Tensor, Sequence[torch.Tensor | None]]:
            with autocast():
                loss = loss_fn(current, batch, keep)
            # retain_graph while tracking: a first-order step's graph can share a part later steps still need
            # (a new-class head built from support features); it is freed with the step's loss all the same.
            targets = [current[n] for n in names]
            return loss, torch.autograd.grad(
                scaler.scale(loss), targets, create_graph=keep, retain_graph=track_meta, allow_unused=True
            )

        loss, grads = scaler.gradients(step_gradients, names)
        grads = {n: torch.zeros_like(current[n]) if g is None else g for n, g in zip(names, grads)}
        if max_grad_norm is not None:
            grads = clip_by_total_norm(grads, max_grad_norm)
        if track_meta:
            new, state = update({n: current[n] for n in names}, grads, lr, state)
        else:
            with torch.no_grad():
                new, state = update({n: current[n] for n in names}, grads, _detached(lr), state)
            new = {n: p.requires_grad_() for n, p in new.items()}
        current.update(new)
        losses.append(loss.detach())
    # One device-to-host copy at the end, not a synchronisation per step.
    return current, torch.stack(losses).float().cpu().tolist() if losses else []


def _detached(lr: LearningRate) -> LearningRate:
    return {n: v.detach() for n, v in lr.items()} if isinstance(lr, dict) else lr


def query_gradients(
    model: torch.nn.Module,
    adapted: ParamDict,
    query: Batch,
    wrt: Sequence[torch.Tensor],
    checkpointed: bool = False,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    scaler: LossScaler = NO_SCALING,
) -> tuple[list[torch.Tensor], float]:
    """The meta-gradient of one task: ∂ L(θ′, query) / ∂ ``wrt`` (zeros where ``wrt`` is unused).

    Under fp16 (``scaler`` enabled) the gradients may hold inf: the caller checks and skips the step."""
    with autocast():
        loss = loss_of(model, adapted, query, checkpointed=checkpointed)
    grads = scaler.unscale(torch.autograd.grad(scaler.scale(loss), list(wrt), allow_unused=True))
    return [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)], float(loss.detach())


@torch.no_grad()
def logits_in_batches(
    model: torch.nn.Module, weights: ParamDict, batches: Iterable[tuple[Any, Batch]], n: int, num_labels: int, device
) -> torch.Tensor:
    """Logits with ``weights`` for every example, gathered back into the original order (as many columns
    as the head in ``weights`` has rows: ``num_labels`` only sizes an empty task's result)."""
    out = None
    for idx, batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = logits_of(model, weights, batch).float().cpu()
        if out is None:
            out = torch.zeros(n, logits.shape[1])
        out[torch.as_tensor(idx)] = logits
    return out if out is not None else torch.zeros(0, num_labels)


# ---------------------------------------------------------------------------------------- memory-bounded second order
def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The default generators' state (CPU, and the GPU's when ``device`` is one): dropout masks re-drawn alike."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _state_tensors(state: Any) -> list[torch.Tensor]:
    """The tensors of an inner update's state, in a fixed order (Adam: m then v; SGD: none)."""
    if isinstance(state, dict):
        return [t for key in sorted(state) for t in _state_tensors(state[key])]
    if isinstance(state, torch.Tensor):
        return [state]
    return []


def _with_state_tensors(state: Any, tensors: Iterable[torch.Tensor]) -> Any:
    it = iter(tensors)

    def rebuild(s: Any) -> Any:
        if isinstance(s, dict):
            return {key: rebuild(s[key]) for key in sorted(s)}
        return next(it) if isinstance(s, torch.Tensor) else s

    return rebuild(state)


def recomputed_meta_gradients(
    model: torch.nn.Module,
    start: ParamDict,
    batches: Sequence[Batch],
    lr: LearningRate,
    update: InnerUpdate,
    query: Batch,
    wrt: Sequence[torch.Tensor],
    second_order: Callable[[int], bool] | bool = True,
    max_grad_norm: float | None = None,
    checkpointed: bool = False,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    scaler: LossScaler = NO_SCALING,
) -> tuple[list[torch.Tensor], float, list[float]]:
    """The meta-gradient of :func:`inner_loop` + :func:`query_gradients` (every weight adapted), in the memory
    of one inner step: (∂ L_query(θ′) / ∂ ``wrt``, the query loss, the support losses).

    Keeping the graph of every second-order step holds ``steps`` double-backward graphs at once. Here the inner
    loop first runs without a graph, keeping only each step's input weights, update state and random-number
    state; then, from the query gradient backwards, each step is run again from detached copies of its inputs,
    with its graph, and the adjoint of its output is pulled back through it (reverse mode with recomputation,
    as the learned optimizer's checkpointed unroll does). ``start`` may be a function of ``wrt`` (a new-class
    head built from support features): the adjoint of θ₀ is pulled back through it at the end. The same
    gradients as the one-graph path, up to rounding (tests/algorithms/test_gradient_invariants.py).
    """
    device = next(iter(start.values())).device
    names = list(start)
    keep = second_order if callable(second_order) else (lambda _i: bool(second_order))
    lr_tensors = list(lr.values()) if isinstance(lr, dict) else []
    extra = [w for w in wrt if any(w is t for t in lr_tensors)]  # meta-tensors the steps use besides θ

    def step(i: int, current: ParamDict, state: Any, lr: LearningRate, graph: bool):
        def step_gradients():
            with autocast():
                loss = loss_of(model, current, batches[i], double_backward=graph, checkpointed=checkpointed)
            return loss, torch.autograd.grad(scaler.scale(loss), [current[n] for n in names], create_graph=graph)

        loss, grads = scaler.gradients(step_gradients, names)
        grads = dict(zip(names, grads))
        if max_grad_norm is not None:
            grads = clip_by_total_norm(grads, max_grad_norm)
        new, state = update(current, grads, lr, state)
        return new, state, loss.detach()

    # 1. Forward without graphs, keeping each step's inputs.
    current = {n: p.detach() for n, p in start.items()}
    state = update.init_state(current)
    saved, losses = [], []
    for i in range(len(batches)):
        saved.append((current, state, rng_state(device)))
        leaves = {n: p.detach().requires_grad_() for n, p in current.items()}
        current, state, loss = step(i, leaves, state, _detached(lr), graph=False)
        current = {n: p.detach() for n, p in current.items()}
        state = _with_state_tensors(state, [t.detach() for t in _state_tensors(state)])
        losses.append(loss)
    end_rng = rng_state(device)

    # 2. The query gradient at θ′.
    final = {n: p.requires_grad_() for n, p in current.items()}
    with autocast():
        query_loss = loss_of(model, final, query, checkpointed=checkpointed)
    adj = list(scaler.unscale(torch.autograd.grad(scaler.scale(query_loss), list(final.values()))))
    adj_state: list[torch.Tensor | None] = [None] * len(_state_tensors(state))
    extra_grads = [torch.zeros_like(w) for w in extra]

    # 3. Backwards through the steps, each run again with its graph.
    for i in reversed(range(len(batches))):
        p_in, s_in, rng = saved[i]
        set_rng_state(rng, device)
        graph = keep(i)
        leaves = {n: p.detach().requires_grad_() for n, p in p_in.items()}
        s_leaves = [t.detach().requires_grad_(graph) for t in _state_tensors(s_in)]
        out, s_out, _ = step(i, leaves, _with_state_tensors(s_in, s_leaves), lr, graph=graph)
        outs, grads_out = [], []
        for o, a in zip(list(out.values()) + _state_tensors(s_out), adj + adj_state):
            if a is not None and o.requires_grad:
                outs.append(o)
                grads_out.append(a)
        inputs = list(leaves.values()) + [t for t in s_leaves if t.requires_grad] + extra
        pulled = torch.autograd.grad(outs, inputs, grads_out, allow_unused=True)
        adj = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves.values(), pulled)]
        it = iter(pulled[len(leaves) :])
        adj_state = [next(it) if t.requires_grad else None for t in s_leaves]
        for acc, g in zip(extra_grads, pulled[len(pulled) - len(extra) :] if extra else []):
            if g is not None:
                acc.add_(g)
    set_rng_state(end_rng, device)

    # 4. Through the start (θ₀ = θ, or a head built from θ), to ``wrt``.
    starts = [start[n] for n in names]
    linked = [(s, a) for s, a in zip(starts, adj) if s.requires_grad]
    grads = (
        torch.autograd.grad([s for s, _ in linked], list(wrt), [a for _, a in linked], allow_unused=True)
        if linked
        else [None] * len(wrt)
    )
    out = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
    for j, w in enumerate(wrt):
        for e, g in zip(extra, extra_grads):
            if w is e:
                out[j] = out[j] + g
    support_losses = torch.stack(losses).float().cpu().tolist() if losses else []
    return out, float(query_loss.detach()), support_losses
