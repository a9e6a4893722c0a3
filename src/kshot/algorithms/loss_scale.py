"""Dynamic loss scaling for fp16 autocast, for gradients taken by ``torch.autograd.grad`` as well as ``backward``.

fp16 holds magnitudes down to 6e-8 (5.96e-8 subnormal, 6.1e-5 normal); the gradients flowing back
through a model's fp16 activations are often smaller and become zero. The cure (Micikevicius et al.,
2018) is to differentiate ``scale · loss`` and divide the gradients by ``scale`` afterwards, with a
scale as large as does not overflow: halved after a step whose gradients hold an inf or NaN, doubled
after ``growth_interval`` clean steps, as ``torch.amp.GradScaler`` does.

GradScaler itself serves ``loss.backward()`` + ``optimizer.step()`` only. kshot's functional inner
loops take gradients with ``torch.autograd.grad`` (and differentiate through them), so this one class
serves both: :meth:`scale` the loss, :meth:`unscale` the gradients (out of place, differentiable, for
the inner loops) or :meth:`unscale_grads_` (in place, on ``.grad``), :meth:`finite` checks them, and
:meth:`update` moves the scale. bf16 and float32 have float32's range and need none of this: the
scaler is then disabled and every method is the identity.

- An inner step whose gradients overflow is taken again at half the scale (the inner loop must
  produce an adapted model; it cannot skip a step).
- An outer step whose meta-gradient overflows is skipped, as GradScaler skips it, and the scale halved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

INIT_SCALE = 2.0**16
GROWTH_INTERVAL = 2000
MAX_RETRIES = 40
"""An inner step is retried at most this many times, halving the scale each time (2**16 → 2**-24):
gradients still not finite then are a NaN in the weights or the data, not an overflow."""


class LossScaler:
    """The loss scale of one run (see the module docstring). ``enabled=False``: the identity."""

    def __init__(
        self,
        enabled: bool,
        init_scale: float = INIT_SCALE,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = GROWTH_INTERVAL,
    ):
        self.enabled = enabled
        self.value = float(init_scale)
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.clean_steps = 0
        self.skipped_steps = 0

    @classmethod
    def for_accelerator(cls, accelerator) -> LossScaler:
        """Enabled where the run autocasts to fp16 (accelerate never does on the CPU)."""
        return cls(enabled=accelerator is not None and accelerator.mixed_precision == "fp16")

    # ------------------------------------------------------------------ scaling
    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.value if self.enabled else loss

    def unscale(self, grads: Any) -> Any:
        """``grads`` (a list, tuple or dict of tensors, None kept) divided by the scale, out of place."""
        if not self.enabled:
            return grads
        inv = 1.0 / self.value
        if isinstance(grads, Mapping):
            return {k: None if g is None else g * inv for k, g in grads.items()}
        return type(grads)(None if g is None else g * inv for g in grads)

    def unscale_grads_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Divide the ``.grad`` of ``tensors`` by the scale, in place."""
        if self.enabled:
            grads = [p.grad for p in tensors if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, 1.0 / self.value)

    @staticmethod
    def finite(tensors: Iterable[torch.Tensor | None]) -> bool:
        """Whether every tensor is free of inf and NaN (one device synchronisation)."""
        flags = [torch.isfinite(t).all() for t in tensors if t is not None]
        return bool(torch.stack(flags).all()) if flags else True

    # ------------------------------------------------------------------ the scale
    def update(self, finite: bool) -> None:
        """After an outer step: halve the scale if its gradients overflowed, double it after a run of clean steps."""
        if not self.enabled:
            return
        if finite:
            self.clean_steps += 1
            if self.clean_steps >= self.growth_interval:
                self.value *= self.growth_factor
                self.clean_steps = 0
        else:
            self.back_off()
            self.skipped_steps += 1

    def step_applies(self, grads: Iterable[torch.Tensor | None]) -> bool:
        """Whether an outer step on these (unscaled, summed across processes) gradients goes ahead: always in
        float32/bf16; under fp16 only if they are finite, else the step is skipped and the scale halved. Every
        process holds the same sum, so all decide alike."""
        if not self.enabled:
            return True
        finite = self.finite(grads)
        self.update(finite)
        if not finite:
            logger.info("fp16: the gradient overflowed; step skipped, loss scale now %g.", self.value)
        return finite

    def backward(
        self, compute_loss: Callable[[], torch.Tensor], tensors: Sequence[torch.Tensor], zero_grad: Callable[[], None]
    ) -> torch.Tensor:
        """One ``backward`` step's gradients into ``tensors``' ``.grad``, unscaled; returns the loss. ``compute_loss``
        runs the forward pass; ``zero_grad`` clears the gradients before each try (an overflow is tried again)."""

        def compute():
            loss = compute_loss()
            zero_grad()
            self.scale(loss).backward()
            return loss, [p.grad for p in tensors]

        loss, grads = self.gradients(compute, [f"{len(tensors)} parameters"])
        for p, g in zip(tensors, grads):
            p.grad = g
        return loss

    def back_off(self) -> None:
        self.value *= self.backoff_factor
        self.clean_steps = 0

    def gradients(
        self, compute: Callable[[], tuple[torch.Tensor, Sequence[torch.Tensor | None]]], names: Sequence[str]
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(loss, unscaled gradients) of an inner step. ``compute()`` returns the loss and the gradients of
        ``self.scale(loss)``; while they overflow it is called again at half the scale (an inner step cannot be
        skipped). ``names``: what the gradients are of, for the error."""
        for _ in range(MAX_RETRIES if self.enabled else 1):
            loss, grads = compute()
            grads = self.unscale(list(grads))
            if not self.enabled or self.finite(grads):
                return loss, grads
            self.back_off()
        raise ModelError(
            f"The fp16 gradients of an inner step are not finite at any loss scale down to {self.value:g} "
            f"({len(names)} tensors, e.g. {names[0] if names else '-'}): the weights or the inputs hold inf or NaN. "
            "Train in bf16 or float32 (params.mixed_precision), or lower the learning rates."
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "clean_steps": self.clean_steps, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, float | int] | None) -> None:
        if state:
            self.value = float(state["value"])
            self.clean_steps = int(state["clean_steps"])
            self.skipped_steps = int(state.get("skipped_steps", 0))


NO_SCALING = LossScaler(enabled=False)
"""The scaler of float32 and bf16 runs: every method is the identity (and it never changes)."""


def refuse_unscaled_fp16(accelerator, algorithm: str) -> None:
    """Meta-training that takes its gradients without a loss scale must not run in fp16: they would underflow."""
    if accelerator is not None and accelerator.mixed_precision == "fp16":
        raise ConfigError(
            f"{algorithm} meta-trains without fp16 loss scaling, so fp16's small gradients would underflow to zero. "
            "Set params.mixed_precision to bf16 (on GPUs with compute capability 8 and up) or no."
        )
